//! The destination writer's lag alarm follows the throttle.
//!
//! The alarm (infra/core.yaml, `DestinationLagAlarm`) treats missing IteratorAge data as
//! breaching, because an unthrottled writer that reports nothing is stuck; but a throttled one
//! reports nothing by design. So its actions are enabled exactly while the writer is unthrottled:
//! `unthrottle` enables them, `throttle` disables them. The alarm is secondary to the throttle
//! itself: failing to change it is a warning, not a failed command.

/// Why the alarm's actions could not be changed.
#[derive(Debug, thiserror::Error)]
#[error("{call} for alarm {alarm}: {reason}")]
pub struct AlarmError {
    pub call: &'static str,
    pub alarm: String,
    pub reason: String,
}

/// Turns the alarm's actions on or off.
pub async fn set_actions(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    alarm: &str,
    enabled: bool,
) -> Result<(), AlarmError> {
    let failed = |call, reason: String| AlarmError { call, alarm: alarm.to_string(), reason };
    if enabled {
        cloudwatch
            .enable_alarm_actions()
            .alarm_names(alarm)
            .send()
            .await
            .map_err(|e| failed("EnableAlarmActions", crate::aws::sdk_error::describe(&e)))?;
    } else {
        cloudwatch
            .disable_alarm_actions()
            .alarm_names(alarm)
            .send()
            .await
            .map_err(|e| failed("DisableAlarmActions", crate::aws::sdk_error::describe(&e)))?;
    }
    Ok(())
}
