"""moto_server, with Kinesis shards that keep every acknowledged record under concurrent puts.

moto's `Shard.put_record` says of itself "this function is not safe for concurrency": it reads the
highest sequence number, adds one and stores the record under it. moto_server answers requests
on threads (werkzeug's `threaded=True`, not an option), so two puts into one shard at once can
take the same number, and the second overwrites the first: PutRecord answered 200 with a sequence
number and a shard, and the record is gone. The local stack puts concurrently all the time (the
gateway, one PutRecord per client request; `cutover`'s barrier rounds), and a demo under faults
lost a barrier this way. Kinesis never loses an acknowledged record, and the local stack must not
either (it is evidence), so this launcher runs moto_server with the shard's reads and writes
under one lock:

- `Shard.put_record` under the lock: a sequence number is taken and used by one put at a time;
- `Shard.get_records` under the lock: it iterates the shard's records, which a concurrent put
  would change under it ("mutated during iteration");
- `get_max_sequence_number` / `get_min_sequence_number` read the ends of the ordered dict in
  O(1) instead of copying every key of the shard (`list(keys())[-1]`), so a put costs the same
  whether the shard holds ten records or a million (the same answers: the dict is in key order).

Nothing else of moto changes. Run it with moto_server's own arguments:

    python tests/testbed/moto_server.py -H 127.0.0.1 -p 5000

The test bed's own test (tests/tests/local_stack.rs,
`concurrent_puts_into_one_shard_keep_every_record`) puts into one shard from many connections
at once and reads every record back.
"""

import sys
import threading

from moto import server
from moto.kinesis import models

_LOCK = threading.RLock()
_put_record = models.Shard.put_record
_get_records = models.Shard.get_records


def _locked_put_record(self, *args, **kwargs):
    with _LOCK:
        return _put_record(self, *args, **kwargs)


def _locked_get_records(self, *args, **kwargs):
    with _LOCK:
        return _get_records(self, *args, **kwargs)


def _max_sequence_number(self):
    return next(reversed(self.records), 0)


def _min_sequence_number(self):
    return next(iter(self.records), 0)


models.Shard.put_record = _locked_put_record
models.Shard.get_records = _locked_get_records
models.Shard.get_max_sequence_number = _max_sequence_number
models.Shard.get_min_sequence_number = _min_sequence_number

if __name__ == "__main__":
    server.main(sys.argv[1:])
