//! The tokio task around [`Scheduler`]: it reads events, keeps the clock and the periodic
//! tick, and hands effects to [`Channels`].

use super::Scheduler;
use crate::channels::Channels;
use crate::event::Event;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the state task looks at its timers (stealing, worker-ttl, leases, idle).
const TICK: Duration = Duration::from_millis(100);

/// The state task's clock: wall-clock seconds at start plus tokio's monotonic time since,
/// so timestamps read like Dask's `time()` while every decision follows tokio's clock
/// (which tests can pause and advance).
#[derive(Clone, Copy)]
pub struct Clock {
    epoch: f64,
    start: Instant,
}

impl Clock {
    /// A clock reading the wall time now.
    pub fn start() -> Clock {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            epoch,
            start: Instant::now(),
        }
    }

    /// Seconds since the epoch.
    pub fn now(&self) -> f64 {
        self.epoch + self.start.elapsed().as_secs_f64()
    }
}

/// Runs the state task until every sender of `events` is dropped. `internal` carries what
/// the state task's own jobs and timers report back: a channel of its own, so that work in
/// flight does not keep the scheduler alive.
pub async fn run(
    mut scheduler: Scheduler,
    clock: Clock,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut internal: mpsc::UnboundedReceiver<Event>,
    mut out: Channels,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
            Some(e) = internal.recv() => e,
            _ = tick.tick() => Event::Tick,
            // a big graph goes in a share at a time, between whatever else is ready
            () = std::future::ready(()), if scheduler.ingesting() => Event::Ingest,
        };
        if !matches!(event, Event::Tick | Event::Ingest) {
            tracing::trace!(?event, "event");
        }
        scheduler.handle(clock.now(), event, &mut out);
    }
}
