//! Stream records come from Kinesis, where anything can be put: decoding any bytes must end in
//! a record or an error, never a panic, and a decoded record's body must decompress or fail
//! cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::envelope::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let _ = record.body();
        let _ = format!("{:?}", record.header);
    }
});
