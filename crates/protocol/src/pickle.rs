//! Writing the few pickles the scheduler itself must produce: exceptions it raises towards
//! clients (PROTOCOL.md §7.6). Clients unpickle them in `clean_exception`, so a scheduler
//! error arrives as the same exception type the stock scheduler would send.
//!
//! Only the opcodes needed for globals, strings, ints, floats, bytes and tuples are written
//! (protocol 3, readable by every Python 3).

use crate::value::Key;
use bytes::Bytes;

/// A minimal pickle writer.
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Writer {
        Writer(vec![0x80, 3]) // PROTO 3
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(module.as_bytes());
        self.0.push(b'\n');
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'\n');
    }
    fn str(&mut self, s: &str) {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, i: i64) {
        if let Ok(small) = i32::try_from(i) {
            self.0.push(b'J'); // BININT
            self.0.extend_from_slice(&small.to_le_bytes());
        } else {
            self.0.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes two's complement
            self.0.extend_from_slice(&i.to_le_bytes());
        }
    }
    fn key(&mut self, key: &Key) {
        match key {
            Key::Str(s) => self.str(s),
            Key::Int(i) => self.int(*i),
            Key::Float(bits) => {
                self.0.push(b'G'); // BINFLOAT, big-endian
                self.0
                    .extend_from_slice(&f64::from_bits(*bits).to_be_bytes());
            }
            Key::Bytes(b) => {
                self.0.push(b'B'); // BINBYTES
                self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
                self.0.extend_from_slice(b);
            }
            Key::Tuple(items) => {
                self.0.push(b'('); // MARK
                for k in items.iter() {
                    self.key(k);
                }
                self.0.push(b't'); // TUPLE
            }
        }
    }
    fn finish(mut self) -> Bytes {
        self.0.push(b'.'); // STOP
        Bytes::from(self.0)
    }
}

/// `builtins.<name>(message)`, e.g. `RuntimeError("...")`.
pub fn builtin_exception(name: &str, message: &str) -> Bytes {
    exception("builtins", name, message)
}

/// `<module>.<name>(message)` for an exception class that takes one message argument.
pub fn exception(module: &str, name: &str, message: &str) -> Bytes {
    let mut w = Writer::new();
    w.global(module, name);
    w.0.push(b'(');
    w.str(message);
    w.0.extend_from_slice(b"tR"); // TUPLE, REDUCE
    w.finish()
}

/// `distributed.scheduler.KilledWorker(task, last_worker, allowed_failures)`. Its `__str__`
/// reads only `last_worker.address`, so a `types.SimpleNamespace(address=...)` stands in for
/// the stock scheduler's `WorkerState`.
pub fn killed_worker(task: &Key, last_worker: &str, allowed_failures: u32) -> Bytes {
    let mut w = Writer::new();
    w.global("distributed.scheduler", "KilledWorker");
    w.0.push(b'(');
    w.key(task);
    w.global("types", "SimpleNamespace");
    w.0.extend_from_slice(b")R}"); // EMPTY_TUPLE, REDUCE, EMPTY_DICT
    w.str("address");
    w.str(last_worker);
    w.0.extend_from_slice(b"sb"); // SETITEM, BUILD (sets __dict__)
    w.int(i64::from(allowed_failures));
    w.0.extend_from_slice(b"tR");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_exception_layout() {
        let p = builtin_exception("RuntimeError", "boom");
        assert_eq!(
            &p[..],
            b"\x80\x03cbuiltins\nRuntimeError\n(X\x04\x00\x00\x00boomtR."
        );
    }

    #[test]
    fn killed_worker_layout() {
        let key = Key::Tuple(vec![Key::str("x"), Key::Int(1)].into());
        let p = killed_worker(&key, "tcp://a:1", 3);
        assert!(p.starts_with(
            b"\x80\x03cdistributed.scheduler\nKilledWorker\n((X\x01\x00\x00\x00xJ\x01\x00\x00\x00t"
        ));
        assert!(p.ends_with(b"J\x03\x00\x00\x00tR."));
    }
}
