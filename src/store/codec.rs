//! The task records' compact binary encoding (store format 2).
//!
//! Task records are most of what a store writes: one per task at submit (100,000 for a large
//! job), and ~4,000 over a 1,000-task failover. As JSON a RUNNING attempt's record is ~225
//! bytes and takes ~0.3 µs to encode; here it is 28 bytes and ~0.03 µs, and redb copies and
//! checksums fewer B-tree pages: overwriting 100,000 records commits in half the time, a
//! failover spends a quarter less in commits (BENCHMARKS.md, "Durable JobMaster"; the fixed
//! cost of a commit, its sync, stays).
//!
//! Layout: the tag byte [`TAG`] (a JSON record starts with `{`, so both can be read), then
//! LEB128 varints: attempt, version, executor (0 for none, else its length + 1, then its
//! UTF-8 bytes), awaiting_restart (0 or 1), the state (its index in [`AttemptState::ALL`]), the
//! number of transitions, and per transition its state index and its time as the difference
//! from the previous transition's (the first from 0; times never go back).

use crate::core::attempt::AttemptLog;
use crate::core::{AttemptState, ExecutorId, TaskRecord};

/// First byte of a binary task record.
pub const TAG: u8 = 0xB1;

/// `record` in the binary encoding.
pub fn encode_task(record: &TaskRecord) -> Vec<u8> {
    let transitions = record.log.transitions();
    let mut out = Vec::with_capacity(16 + transitions.len() * 3);
    out.push(TAG);
    put(&mut out, u64::from(record.attempt));
    put(&mut out, record.version);
    match &record.executor {
        None => put(&mut out, 0),
        Some(ExecutorId(id)) => {
            put(&mut out, id.len() as u64 + 1);
            out.extend_from_slice(id.as_bytes());
        }
    }
    out.push(u8::from(record.awaiting_restart));
    out.push(index(record.log.state()));
    put(&mut out, transitions.len() as u64);
    let mut previous = 0;
    for &(state, at) in transitions {
        out.push(index(state));
        put(&mut out, at.saturating_sub(previous));
        previous = previous.max(at);
    }
    out
}

/// A task record from the binary encoding; why not, if it is not one.
pub fn decode_task(bytes: &[u8]) -> Result<TaskRecord, String> {
    let mut r = Reader { bytes, at: 0 };
    if r.byte()? != TAG {
        return Err("not a binary task record".into());
    }
    let attempt = u32::try_from(r.varint()?).map_err(|_| "attempt out of range")?;
    let version = r.varint()?;
    let executor = match r.varint()? {
        0 => None,
        n => {
            let len = usize::try_from(n - 1).map_err(|_| "executor id too long")?;
            let id = r.take(len)?;
            Some(ExecutorId(
                std::str::from_utf8(id)
                    .map_err(|_| "executor id not UTF-8")?
                    .to_owned(),
            ))
        }
    };
    let awaiting_restart = match r.byte()? {
        0 => false,
        1 => true,
        b => return Err(format!("awaiting_restart byte {b}")),
    };
    let state = state(r.byte()?)?;
    let n = r.varint()?;
    // At least two bytes per transition: a count beyond the bytes left is damage.
    if n > (bytes.len() - r.at) as u64 / 2 {
        return Err(format!("{n} transitions in {} bytes", bytes.len()));
    }
    let mut transitions = Vec::with_capacity(n as usize);
    let mut at = 0u64;
    for _ in 0..n {
        let s = self::state(r.byte()?)?;
        at = at.checked_add(r.varint()?).ok_or("time out of range")?;
        transitions.push((s, at));
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes left over", bytes.len() - r.at));
    }
    Ok(TaskRecord {
        attempt,
        version,
        executor,
        awaiting_restart,
        log: AttemptLog::from_parts(state, transitions),
    })
}

fn index(state: AttemptState) -> u8 {
    AttemptState::ALL
        .iter()
        .position(|&s| s == state)
        .expect("every state is in ALL") as u8
}

fn state(b: u8) -> Result<AttemptState, String> {
    AttemptState::ALL
        .get(usize::from(b))
        .copied()
        .ok_or_else(|| format!("attempt state {b}"))
}

/// LEB128: 7 bits per byte, low first, the high bit set on all but the last.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("record cut short")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("record cut short")?;
        let slice = self.bytes.get(self.at..end).ok_or("record cut short")?;
        self.at = end;
        Ok(slice)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 64 bits".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(executor: Option<&str>) -> TaskRecord {
        let mut log = AttemptLog::new(1_700_000_000_000);
        for (k, s) in [
            AttemptState::Scheduled,
            AttemptState::Deploying,
            AttemptState::Initializing,
            AttemptState::Running,
        ]
        .into_iter()
        .enumerate()
        {
            log.transition(s, 1_700_000_000_000 + 300 * k as u64)
                .expect("legal");
        }
        TaskRecord {
            attempt: 300,
            version: u64::MAX,
            executor: executor.map(|e| ExecutorId(e.to_owned())),
            awaiting_restart: true,
            log,
        }
    }

    #[test]
    fn a_task_record_survives_the_binary_encoding() {
        for record in [
            running(Some("exec-0001")),
            running(None),
            running(Some("ünï")),
            TaskRecord {
                attempt: 0,
                version: 0,
                executor: None,
                awaiting_restart: false,
                log: AttemptLog::new(0),
            },
        ] {
            let bytes = encode_task(&record);
            assert_eq!(decode_task(&bytes), Ok(record));
        }
    }

    #[test]
    fn the_binary_encoding_is_a_fraction_of_the_json() {
        let record = running(Some("exec-0001"));
        let binary = encode_task(&record).len();
        let json = serde_json::to_vec(&record).expect("json").len();
        assert!(binary * 4 < json, "{binary} bytes against {json}");
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let bytes = encode_task(&running(Some("exec-0001")));
        for cut in 0..bytes.len() {
            assert!(decode_task(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_task(&longer).is_err());
        // tag, attempt 0, version 0, no executor, not awaiting, state 200, no transitions
        assert!(decode_task(&[TAG, 0, 0, 0, 0, 200, 0]).is_err());
        assert!(decode_task(&[TAG, 0, 0, 0, 0, 0, 0]).is_ok());
        let mut endless = vec![TAG];
        endless.extend([0xFF; 10]);
        endless.push(0x01);
        assert!(decode_task(&endless).is_err());
    }
}
