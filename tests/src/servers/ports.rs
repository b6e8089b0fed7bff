//! Free loopback ports.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that nothing listens on right now.
///
/// There is a window between this call and the server binding the port; servers started with a
/// port from here retry with a fresh one when the bind fails (see [`crate::servers::influxd`]).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    listener.local_addr().expect("local address of a bound listener").port()
}
