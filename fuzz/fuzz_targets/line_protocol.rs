//! Write bodies come from clients: validating any bytes, in any precision, must never panic, and
//! every accepted line must be a slice of the body that ends where the next one starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::line_protocol::{Precision, lines, split_lines};

fuzz_target!(|data: &[u8]| {
    for precision in [Precision::Nanoseconds, Precision::Seconds] {
        for line in lines(data, precision).flatten() {
            let mut out = Vec::new();
            line.write_stamped(1, &mut out);
            assert!(out.ends_with(b"\n"));
        }
    }
    let mut end = 0;
    for raw in split_lines(data) {
        assert!(raw.start >= end);
        end = raw.start + raw.bytes.len();
    }
});
