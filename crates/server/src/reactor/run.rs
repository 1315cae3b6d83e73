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

/// While a big graph is taken in, at most this many other events come between two of its
/// shares, so a flood of events does not stop it.
const EVENTS_PER_INGEST: u32 = 64;

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
    let mut since_ingest = 0u32;
    loop {
        let event = if !scheduler.ingesting() {
            tokio::select! {
                e = events.recv() => e,
                Some(e) = internal.recv() => Some(e),
                _ = tick.tick() => Some(Event::Tick),
            }
        } else {
            // Between shares the runtime's other tasks run on this thread too: a share is
            // always ready, so without this the state task would keep the thread for the
            // whole graph, and the connections that bring other requests with it.
            tokio::task::yield_now().await;
            if since_ingest >= EVENTS_PER_INGEST {
                Some(Event::Ingest)
            } else {
                next_while_ingesting(&mut events, &mut internal, &mut tick).await
            }
        };
        let Some(event) = event else { break };
        since_ingest = match event {
            Event::Ingest => 0,
            _ => since_ingest + 1,
        };
        if !matches!(event, Event::Tick | Event::Ingest) {
            tracing::trace!(?event, "event");
        }
        scheduler.handle(clock.now(), event, &mut out);
    }
}

/// While a big graph is taken in: what has arrived goes first, then the graph's next share,
/// so another client's request waits for one share at most. `None`: every sender is gone.
async fn next_while_ingesting(
    events: &mut mpsc::UnboundedReceiver<Event>,
    internal: &mut mpsc::UnboundedReceiver<Event>,
    tick: &mut tokio::time::Interval,
) -> Option<Event> {
    tokio::select! {
        biased;
        e = events.recv() => e,
        Some(e) = internal.recv() => Some(e),
        _ = tick.tick() => Some(Event::Tick),
        () = std::future::ready(()) => Some(Event::Ingest),
    }
}
