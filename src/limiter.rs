//! Adaptive client-side limiter: one per (service, region), shared by every call to that
//! service in that region within the process.
//!
//! It sits at the bottom of the import graph (std and tokio only) and knows nothing of AWS:
//! callers classify each outcome and report it on the [`Permit`] they were given. Two limits
//! apply to every call start:
//!
//! * **calls in flight** (a congestion window): starts at `max_in_flight`, grows by one per
//!   window's worth of successes, shrinks ×[`BETA`] on a throttle, always within
//!   `1..=max_in_flight`;
//! * **start rate** (a token bucket): off until the first throttle, so an unthrottled service
//!   is never slowed; then set to ×[`BETA`] of the rate the service was granting (successes
//!   per second since the last cut) and regrown along a CUBIC curve back to that plateau and
//!   past it, as the AWS SDKs' adaptive retry mode does.
//!
//! A congestion event cuts both limits at most once per round trip: a throttle of a call that
//! started before the last cut was sent under the old limits and is already answered for.
//! Independent processes sharing one service limit each see throttles in proportion to their
//! rate, so multiplicative decrease with the same absolute regrowth curve drives each toward
//! its share without any coordination.
//!
//! A throttled call is not a failed attempt: the caller reports it with
//! [`Permit::throttled`], acquires a new permit and calls again, bounded only by its deadline:
//!
//! ```ignore
//! loop {
//!     let permit = limiter.acquire().await;
//!     match call().await {
//!         Err(e) if is_throttle(&e) => permit.throttled(), // not an attempt: go again
//!         Err(e) if no_answer(&e) => { permit.other_error(); return Err(e) } // retry policy's
//!         answer => { permit.success(); return answer }  // a result or a service error
//!     }
//! }
//! ```
//!
//! The decisions live in [`Control`], a pure state machine driven with explicit instants;
//! [`Limiter`] adds the FIFO queue of waiting callers around it, and [`Limiters`] the map
//! from (service, region) to limiter.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Multiplicative decrease on a throttle, for both limits (the SDKs' adaptive mode uses 0.7).
pub const BETA: f64 = 0.7;
/// CUBIC scaling constant, in calls/s per s³: how fast the start rate regrows after a cut.
/// Regaining the rate before the cut takes K = ∛(rate × (1 − β) / C): 2.0 s at 100 calls/s,
/// 1.1 s at 20 calls/s, 4.2 s at 1,000 calls/s. The SDKs use 0.4 (K = 4.2 s at 100 calls/s),
/// which suits long-lived clients; an invocation lasts seconds, and when other instances
/// sharing the limit finish, the ones left must take over the freed rate within seconds.
pub const CUBIC_C: f64 = 4.0;
/// After the first cut of a busy period the granted rate is only roughly known (a service's
/// burst allowance inflates it, a short span deflates it), so the rate grows this many times
/// per second until the next throttle instead of settling on a plateau.
pub const ROUGH_GROWTH: f64 = 2.0;
/// A cut below this fraction of the previous plateau means other clients are taking a larger
/// share of the limit: the next plateau is set lower still to leave them room (CUBIC's fast
/// convergence).
pub const LOSING: f64 = 0.9;
/// The longest window over which the granted rate (successes per second) is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The granted rate is measured over at most this many of the latest successes, so that at a
/// high rate it reflects the last fraction of a second rather than a whole ramp.
pub const ESTIMATE_SAMPLES: usize = 50;
/// The first rate estimate of a busy period spans at least this long: a throttle within the
/// first round trips says more about the service's burst allowance than about its rate.
pub const MIN_SPAN: Duration = Duration::from_millis(100);
/// The start rate never falls below this many calls per second.
pub const MIN_RATE: f64 = 0.5;
/// The start-rate bucket holds this much of the current rate, so that timer granularity does
/// not cost throughput, while bursts stay far below a service's own burst allowance.
pub const BURST: Duration = Duration::from_millis(50);

/// How a call ended, as far as the limiter cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The service answered, with a result or an error that says nothing about load (not
    /// found, access denied, a dependency): the limits may grow.
    Success,
    /// The service refused the call for rate (HTTP 429 and the like): the limits shrink.
    Throttled,
    /// No usable answer (timeout, connection error, 5xx, cancelled call): no signal either
    /// way, the limits stay.
    Other,
}

/// What [`Control::try_start`] decided for the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Start now; the call is counted in flight under this sequence number.
    Go(u64),
    /// All slots are taken: wait for a call to finish.
    Full,
    /// A slot is free but the start rate allows the next call only at this instant.
    NotBefore(Instant),
}

/// The start-rate token bucket and its CUBIC regrowth, present after the first throttle.
#[derive(Clone, Debug)]
struct Rate {
    /// Current fill rate, calls per second.
    fill: f64,
    tokens: f64,
    refilled: Instant,
    /// The rate the service granted when last throttled: CUBIC's plateau.
    w_max: f64,
    cut_at: Instant,
    /// w_max came from the first estimate of a busy period, which a service's burst inflates.
    rough: bool,
}

impl Rate {
    /// CUBIC: β·w_max right after the cut, flat around w_max after K seconds, then faster.
    fn cubic(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.cut_at).as_secs_f64();
        if self.rough {
            return BETA * self.w_max * ROUGH_GROWTH.powf(t);
        }
        let k = (self.w_max * (1.0 - BETA) / CUBIC_C).cbrt();
        CUBIC_C * (t - k).powi(3) + self.w_max
    }

    /// Adds the tokens earned since the last refill, then moves the fill rate along the curve.
    /// Growth past w_max is capped at twice the measured rate so that an unused allowance does
    /// not build up while the caller is limited elsewhere.
    fn refill(&mut self, now: Instant, granted: f64) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let cap = self.w_max.max(2.0 * granted);
        self.fill = self.cubic(now).clamp(MIN_RATE, cap.max(MIN_RATE));
        let capacity = (self.fill * BURST.as_secs_f64()).max(1.0);
        self.tokens = (self.tokens + dt * self.fill).min(capacity);
    }
}

/// Successes in the last [`RATE_WINDOW`], for the rate the service is granting us.
#[derive(Clone, Debug, Default)]
struct Meter {
    successes: VecDeque<Instant>,
    /// Start of the current busy period: the rate is measured over at most this much time.
    busy_since: Option<Instant>,
    last_finish: Option<Instant>,
}

impl Meter {
    fn on_start(&mut self, now: Instant, idle: bool) {
        let quiet = self
            .last_finish
            .is_none_or(|t| now.saturating_duration_since(t) >= RATE_WINDOW);
        if self.busy_since.is_none() || (idle && quiet) {
            self.busy_since = Some(now);
            self.successes.clear();
        }
    }

    fn on_finish(&mut self, now: Instant, success: bool) {
        self.last_finish = Some(now);
        if success {
            self.successes.push_back(now);
        }
    }

    /// Successes per second over the window starting at `from` (at most [`RATE_WINDOW`] ago,
    /// and not before the current busy period), and the window's length in seconds.
    fn rate_since(&mut self, now: Instant, from: Option<Instant>) -> (f64, f64) {
        while self
            .successes
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > RATE_WINDOW)
        {
            self.successes.pop_front();
        }
        let mut start = now.checked_sub(RATE_WINDOW).unwrap_or(now);
        let mut floor = Duration::from_millis(1);
        if let Some(busy) = self.busy_since.filter(|&t| t > start) {
            (start, floor) = (busy, MIN_SPAN);
        }
        if let Some(cut) = from.filter(|&t| t > start) {
            (start, floor) = (cut, Duration::from_millis(1));
        }
        if self.successes.len() > ESTIMATE_SAMPLES {
            let t = self.successes[self.successes.len() - ESTIMATE_SAMPLES - 1];
            if t > start {
                (start, floor) = (t, Duration::from_millis(1));
            }
        }
        let n = self
            .successes
            .iter()
            .rev()
            .take_while(|&&t| t > start)
            .count();
        let span = now
            .saturating_duration_since(start)
            .max(floor)
            .as_secs_f64();
        (n as f64 / span, span)
    }

    /// Successes per second over the last [`RATE_WINDOW`].
    fn granted(&mut self, now: Instant) -> f64 {
        self.rate_since(now, None).0
    }

    /// An optimistic estimate of the rate the service grants, from the successes since the
    /// last cut: one success more than seen, so that a throttle before any success still
    /// yields a usable rate. Measuring from the last cut keeps a service's initial burst from
    /// inflating later estimates. Overestimating costs another cut one round trip later;
    /// underestimating costs seconds of regrowth.
    fn estimate(&mut self, now: Instant, last_cut: Option<Instant>) -> f64 {
        let (rate, span) = self.rate_since(now, last_cut);
        rate + 1.0 / span
    }
}

/// The limiter's decisions: a pure state machine, driven with explicit instants so that it
/// can be tested with a table of events.
#[derive(Clone, Debug)]
pub struct Control {
    max: usize,
    /// Congestion window: calls allowed in flight, fractional so that it grows smoothly.
    window: f64,
    in_flight: usize,
    next_seq: u64,
    /// Calls numbered below this started before the last cut.
    cut_seq: u64,
    throttles: u64,
    meter: Meter,
    rate: Option<Rate>,
}

impl Control {
    /// Starts wide open: `max_in_flight` calls in flight (at least 1) and no start-rate limit,
    /// so that a service that never throttles is never slowed down.
    pub fn new(max_in_flight: usize) -> Self {
        let max = max_in_flight.max(1);
        Control {
            max,
            window: max as f64,
            in_flight: 0,
            next_seq: 0,
            cut_seq: 0,
            throttles: 0,
            meter: Meter::default(),
            rate: None,
        }
    }

    /// Calls currently allowed in flight, in `1..=max_in_flight`.
    pub fn limit(&self) -> usize {
        (self.window as usize).clamp(1, self.max)
    }

    /// Calls currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Current start-rate limit in calls per second, `None` until the first throttle.
    pub fn rate(&self) -> Option<f64> {
        self.rate.as_ref().map(|r| r.fill)
    }

    /// Throttles reported so far.
    pub fn throttles(&self) -> u64 {
        self.throttles
    }

    /// Decides whether a call may start at `now`; on [`Start::Go`] it is counted in flight and
    /// must later be reported to [`Control::finish`] with the sequence number given.
    pub fn try_start(&mut self, now: Instant) -> Start {
        if self.in_flight >= self.limit() {
            return Start::Full;
        }
        if let Some(rate) = self.rate.as_mut() {
            let granted = self.meter.granted(now);
            rate.refill(now, granted);
            // A hair of tolerance: float rounding must not cost a timer tick.
            if rate.tokens < 1.0 - 1e-9 {
                let wait = (1.0 - rate.tokens) / rate.fill;
                return Start::NotBefore(now + Duration::from_secs_f64(wait));
            }
            rate.tokens -= 1.0;
        }
        self.meter.on_start(now, self.in_flight == 0);
        self.in_flight += 1;
        self.next_seq += 1;
        Start::Go(self.next_seq - 1)
    }

    /// Records how the call numbered `seq` ended at `now` and adapts the limits.
    pub fn finish(&mut self, seq: u64, outcome: Outcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.meter.on_finish(now, outcome == Outcome::Success);
        match outcome {
            Outcome::Success => {
                // Additive increase: +1 per window's worth of successes.
                self.window = (self.window + 1.0 / self.window).min(self.max as f64);
            }
            Outcome::Throttled => {
                self.throttles += 1;
                if seq >= self.cut_seq {
                    self.cut(now);
                }
            }
            Outcome::Other => {}
        }
    }

    /// One congestion event: both limits shrink ×β, and later throttles of calls already in
    /// flight are not counted again.
    fn cut(&mut self, now: Instant) {
        self.cut_seq = self.next_seq;
        self.window = (self.window * BETA).max(1.0);
        let estimate = self
            .meter
            .estimate(now, self.rate.as_ref().map(|r| r.cut_at));
        let granted = self.meter.granted(now);
        let base = match self.rate.as_mut() {
            Some(rate) => {
                rate.refill(now, granted);
                rate.fill.min(estimate)
            }
            None => estimate,
        };
        let fill = (base * BETA).max(MIN_RATE);
        // Fast convergence (as in CUBIC): a limiter cut below its previous plateau is losing
        // ground to others sharing the limit, so it aims lower and leaves them room.
        let w_max = match self.rate.as_ref() {
            Some(r) if !r.rough && base < LOSING * r.w_max => base * (1.0 + BETA) / 2.0,
            _ => base,
        };
        let tokens = self.rate.as_ref().map_or(0.0, |r| r.tokens.min(1.0));
        self.rate = Some(Rate {
            fill,
            tokens,
            refilled: now,
            w_max: w_max.max(MIN_RATE),
            cut_at: now,
            rough: self.rate.is_none(),
        });
    }
}

/// The FIFO queue of callers waiting to start, around the [`Control`].
struct State {
    control: Control,
    queue: VecDeque<Waiter>,
    next_ticket: u64,
}

struct Waiter {
    ticket: u64,
    wake: Arc<Notify>,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock, so a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Lets the caller at the head of the queue look again (its turn may have come).
    fn wake_head(&self) {
        if let Some(head) = self.queue.front() {
            head.wake.notify_one();
        }
    }
}

/// An adaptive limiter for one service in one region. Cheap to clone: clones share state.
#[derive(Clone)]
pub struct Limiter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Limiter")
            .field("limit", &state.control.limit())
            .field("in_flight", &state.control.in_flight())
            .field("rate", &state.control.rate())
            .field("throttled", &state.control.throttles())
            .finish()
    }
}

/// The right to make one call; report how it ended. Dropping it unreported counts as
/// [`Outcome::Other`] (no signal), so a cancelled call frees its slot.
#[must_use = "a permit holds a slot until it is reported or dropped"]
pub struct Permit {
    shared: Arc<Shared>,
    seq: u64,
    done: bool,
}

impl Limiter {
    /// A limiter allowing at most `max_in_flight` calls in flight (at least 1).
    pub fn new(max_in_flight: usize) -> Self {
        Limiter {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    control: Control::new(max_in_flight),
                    queue: VecDeque::new(),
                    next_ticket: 0,
                }),
            }),
        }
    }

    /// Waits for a slot and, once throttled, for a start token; callers are served in the
    /// order they called. Cancel-safe: a dropped wait leaves the queue.
    pub async fn acquire(&self) -> Permit {
        let wake = Arc::new(Notify::new());
        let ticket = {
            let mut state = self.shared.lock();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.queue.push_back(Waiter {
                ticket,
                wake: Arc::clone(&wake),
            });
            ticket
        };
        let mut queued = Queued {
            shared: &self.shared,
            ticket,
            armed: true,
        };
        loop {
            match self.try_take(ticket) {
                Ok(seq) => {
                    queued.armed = false;
                    return Permit {
                        shared: Arc::clone(&self.shared),
                        seq,
                        done: false,
                    };
                }
                Err(None) => wake.notified().await,
                Err(Some(at)) => {
                    // Woken early or timed out: either way, look again.
                    let _ = tokio::time::timeout_at(at, wake.notified()).await;
                }
            }
        }
    }

    /// The head of the queue starts if the control allows; `Err(Some(t))` = look again at `t`
    /// (or when woken), `Err(None)` = look again when woken.
    fn try_take(&self, ticket: u64) -> Result<u64, Option<Instant>> {
        let mut state = self.shared.lock();
        if state.queue.front().map(|w| w.ticket) != Some(ticket) {
            return Err(None);
        }
        match state.control.try_start(Instant::now()) {
            Start::Go(seq) => {
                state.queue.pop_front();
                state.wake_head();
                Ok(seq)
            }
            Start::Full => Err(None),
            Start::NotBefore(at) => Err(Some(at)),
        }
    }

    /// Calls currently allowed in flight, for metrics.
    pub fn in_flight_limit(&self) -> usize {
        self.shared.lock().control.limit()
    }

    /// Current start-rate limit in calls per second; `None` until the first throttle.
    pub fn rate_limit(&self) -> Option<f64> {
        self.shared.lock().control.rate()
    }

    /// Throttles reported through this limiter's permits.
    pub fn throttled(&self) -> u64 {
        self.shared.lock().control.throttles()
    }
}

/// Removes a cancelled waiter from the queue.
struct Queued<'a> {
    shared: &'a Shared,
    ticket: u64,
    armed: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.shared.lock();
        let was_head = state.queue.front().map(|w| w.ticket) == Some(self.ticket);
        state.queue.retain(|w| w.ticket != self.ticket);
        if was_head {
            state.wake_head();
        }
    }
}

impl Permit {
    /// The service answered: the limits may grow.
    pub fn success(mut self) {
        self.finish(Outcome::Success);
    }

    /// The service refused the call for rate: the limits shrink (once per round trip).
    pub fn throttled(mut self) {
        self.finish(Outcome::Throttled);
    }

    /// No usable answer: the slot is freed and the limits stay.
    pub fn other_error(mut self) {
        self.finish(Outcome::Other);
    }

    /// Reports `outcome`; the permit is spent.
    pub fn finish_with(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut state = self.shared.lock();
        state.control.finish(self.seq, outcome, Instant::now());
        state.wake_head();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(Outcome::Other);
    }
}

/// One [`Limiter`] per (service, region), created on first use, all with the same
/// `max_in_flight`.
#[derive(Debug)]
pub struct Limiters {
    max_in_flight: usize,
    map: Mutex<HashMap<(&'static str, String), Limiter>>,
}

impl Limiters {
    /// Limiters whose calls in flight never exceed `max_in_flight` each.
    pub fn new(max_in_flight: usize) -> Self {
        Limiters {
            max_in_flight,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter of `service` in `region`, shared with every other caller of the pair.
    pub fn get(&self, service: &'static str, region: &str) -> Limiter {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((service, region.to_owned()))
            .or_insert_with(|| Limiter::new(self.max_in_flight))
            .clone()
    }

    /// The current in-flight limit of every limiter created so far, for metrics.
    pub fn in_flight_limits(&self) -> Vec<usize> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(Limiter::in_flight_limit).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    const LATENCY: Duration = Duration::from_millis(20);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Starts one call at `now` (waiting for the start rate if it must) and returns its number.
    fn start(c: &mut Control, now: Instant) -> (u64, Instant) {
        match c.try_start(now) {
            Start::Go(seq) => (seq, now),
            Start::NotBefore(at) => start(c, at),
            Start::Full => panic!("no slot free"),
        }
    }

    #[test]
    fn success_grows_the_window_by_one_per_window_up_to_max() {
        // (window before, successes, max, limit after)
        let table = [
            (4.0, 4, 10, 4),
            (4.0, 5, 10, 5),
            (4.0, 10, 10, 6),
            (9.5, 10, 10, 10),
            (10.0, 100, 10, 10),
        ];
        for (window, successes, max, expected) in table {
            // GIVEN a window of `window` calls
            let t0 = Instant::now();
            let mut c = Control::new(max);
            c.window = window;
            // WHEN `successes` calls succeed one after another
            for i in 0..successes {
                let (seq, t) = start(&mut c, t0 + ms(20 * i));
                c.finish(seq, Outcome::Success, t + ms(20));
            }
            // THEN the window has grown by about one per window's worth, never past max
            assert_eq!(c.limit(), expected, "{window} + {successes} successes");
            assert!(c.window <= max as f64);
        }
    }

    #[test]
    fn a_burst_of_throttles_from_one_round_trip_cuts_once() {
        // GIVEN 32 calls in flight, all started before any throttle
        let t0 = Instant::now();
        let mut c = Control::new(32);
        let seqs: Vec<u64> = (0..32).map(|_| start(&mut c, t0).0).collect();
        assert_eq!(c.try_start(t0), Start::Full);
        // WHEN all of them come back throttled
        for seq in seqs {
            c.finish(seq, Outcome::Throttled, t0 + LATENCY);
        }
        // THEN the window is cut once (32 × 0.7), every throttle is counted, and a start
        // rate now applies
        assert_eq!(c.limit(), 22);
        assert_eq!(c.throttles(), 32);
        assert!(c.rate().is_some());
        // WHEN a call started after the cut is throttled too
        let (seq, t) = start(&mut c, t0 + LATENCY);
        c.finish(seq, Outcome::Throttled, t + LATENCY);
        // THEN that is a new congestion event: a second cut (22.4 × 0.7)
        assert_eq!(c.limit(), 15);
    }

    #[test]
    fn cuts_never_go_below_one_call_or_the_minimum_rate() {
        // GIVEN a limiter of max 8
        let mut c = Control::new(8);
        let mut t = Instant::now();
        // WHEN 40 round trips in a row end in a throttle
        for _ in 0..40 {
            let (seq, started) = start(&mut c, t);
            t = started + LATENCY;
            c.finish(seq, Outcome::Throttled, t);
        }
        // THEN one call may still be in flight, at the minimum rate
        assert_eq!(c.limit(), 1);
        assert!(c.rate().unwrap() >= MIN_RATE);
        assert!(matches!(c.try_start(t), Start::Go(_) | Start::NotBefore(_)));
    }

    #[test]
    fn other_errors_free_the_slot_and_change_nothing() {
        // GIVEN a limiter of max 2 with both slots taken
        let t0 = Instant::now();
        let mut c = Control::new(2);
        let (a, _) = start(&mut c, t0);
        start(&mut c, t0);
        assert_eq!(c.try_start(t0), Start::Full);
        // WHEN one call ends with an error that is not a throttle
        c.finish(a, Outcome::Other, t0 + LATENCY);
        // THEN its slot is free and the limits are as they were
        assert_eq!(c.in_flight(), 1);
        assert_eq!((c.limit(), c.rate(), c.throttles()), (2, None, 0));
        assert!(matches!(c.try_start(t0 + LATENCY), Start::Go(_)));
    }

    #[test]
    fn first_throttle_sets_the_rate_from_what_the_service_granted() {
        // (successes in the first 100 ms, calls/s granted + 1 optimistic, as the estimate)
        for (successes, estimate) in [(0u64, 10.0), (9, 100.0), (49, 500.0)] {
            // GIVEN `successes` calls that succeeded within the first 100 ms
            let t0 = Instant::now();
            let mut c = Control::new(64);
            for i in 0..successes {
                let (seq, _) = start(&mut c, t0 + ms(i * 100 / successes.max(1)));
                c.finish(seq, Outcome::Success, t0 + ms(100));
            }
            // WHEN the next call is throttled
            let (seq, _) = start(&mut c, t0 + ms(80));
            c.finish(seq, Outcome::Throttled, t0 + ms(100));
            // THEN the start rate is β × the estimate, and the next call must wait for it
            let rate = c.rate().unwrap();
            assert!((rate - BETA * estimate).abs() < 1e-6, "{successes}: {rate}");
            let Start::NotBefore(at) = c.try_start(t0 + ms(100)) else {
                panic!("no wait at {rate}/s");
            };
            assert_eq!(at, t0 + ms(100) + Duration::from_secs_f64(1.0 / rate));
        }
    }

    #[test]
    fn the_rate_regrows_along_the_cubic_curve() {
        let t0 = Instant::now();
        let rate = |w_max: f64, rough: bool| Rate {
            fill: BETA * w_max,
            tokens: 0.0,
            refilled: t0,
            w_max,
            cut_at: t0,
            rough,
        };
        // (w_max, rough, seconds after the cut, expected fill rate)
        let k = (100.0 * (1.0 - BETA) / CUBIC_C).cbrt();
        let table = [
            (100.0, false, 0.0, 70.0),
            (100.0, false, k, 100.0),
            (100.0, false, k + 1.0, 100.0 + CUBIC_C),
            (100.0, false, k + 2.0, 100.0 + 8.0 * CUBIC_C),
            (100.0, true, 0.0, 70.0),
            (100.0, true, 1.0, 140.0),
        ];
        for (w_max, rough, secs, expected) in table {
            // GIVEN a cut at t0 from a plateau of w_max
            let r = rate(w_max, rough);
            // WHEN `secs` seconds have passed
            let fill = r.cubic(t0 + Duration::from_secs_f64(secs));
            // THEN the curve gives the expected rate
            assert!(
                (fill - expected).abs() < 1e-6,
                "{w_max} {rough} {secs}: {fill}"
            );
        }
        // AND growth past the plateau is capped at twice the measured rate
        let mut r = rate(100.0, false);
        r.refill(t0 + Duration::from_secs(10), 60.0);
        assert_eq!(r.fill, 120.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_frees_its_slot() {
        // GIVEN a limiter of one slot, taken
        let limiter = Limiter::new(1);
        let permit = limiter.acquire().await;
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await.success() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // WHEN the permit is dropped unreported
        drop(permit);
        // THEN the waiter gets the slot without any time passing, and nothing was adapted
        let t0 = Instant::now();
        waiter.await.unwrap();
        assert_eq!(Instant::now(), t0);
        assert_eq!((limiter.in_flight_limit(), limiter.throttled()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_the_order_they_came() {
        // GIVEN a limiter of one slot, taken, and five callers queued one after another
        let limiter = Limiter::new(1);
        let permit = limiter.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (limiter, order) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = limiter.acquire().await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(LATENCY).await;
                permit.success();
            }));
            tokio::task::yield_now().await;
        }
        // WHEN the slot is released
        permit.success();
        for task in tasks {
            task.await.unwrap();
        }
        // THEN they got it in the order they asked
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_leaves_the_queue() {
        // GIVEN a limiter of one slot, taken, and a caller that gives up waiting
        let limiter = Limiter::new(1);
        let permit = limiter.acquire().await;
        let gave_up = tokio::time::timeout(ms(10), limiter.acquire()).await;
        assert!(gave_up.is_err());
        // WHEN the slot is released
        permit.other_error();
        // THEN the next caller gets it at once: no ghost waits ahead of it
        let t0 = Instant::now();
        limiter.acquire().await.success();
        assert_eq!(Instant::now(), t0);
    }

    #[test]
    fn limiters_are_shared_per_service_and_region() {
        // GIVEN one set of limiters with a max of 4
        let limiters = Limiters::new(4);
        // WHEN two callers ask for the same service and region, and others for other pairs
        let a = limiters.get("imagebuilder", "us-east-1");
        let b = limiters.get("imagebuilder", "us-east-1");
        let c = limiters.get("imagebuilder", "eu-west-1");
        let d = limiters.get("ec2", "us-east-1");
        // THEN the first two share one limiter and the others are distinct, all with max 4
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert!(!Arc::ptr_eq(&a.shared, &c.shared));
        assert!(!Arc::ptr_eq(&a.shared, &d.shared));
        assert_eq!(d.in_flight_limit(), 4);
    }

    /// A service limit: a token bucket of `rate` calls/s holding at most `burst`, shared by
    /// every simulated instance. Refused calls take no token, as with AWS's limits.
    struct Service {
        rate: f64,
        burst: f64,
        bucket: Mutex<(f64, Instant)>,
        calls: AtomicU64,
        throttles: AtomicU64,
    }

    impl Service {
        fn new(rate: f64, burst: f64) -> Arc<Self> {
            Arc::new(Service {
                rate,
                burst,
                bucket: Mutex::new((burst, Instant::now())),
                calls: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
            })
        }

        fn call(&self, now: Instant) -> bool {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut bucket = self.bucket.lock().unwrap();
            let dt = now.saturating_duration_since(bucket.1).as_secs_f64();
            *bucket = ((bucket.0 + dt * self.rate).min(self.burst), now);
            if bucket.0 >= 1.0 {
                bucket.0 -= 1.0;
                true
            } else {
                self.throttles.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// One function instance: `workers` ARNs in flight at once (the engine's
    /// `MAX_CONCURRENCY`), each retried through `limiter` until its call succeeds. Returns the
    /// simulated time it took.
    async fn instance(
        limiter: Limiter,
        service: Option<Arc<Service>>,
        arns: usize,
        workers: usize,
    ) -> Duration {
        let t0 = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (limiter, service, next) = (limiter.clone(), service.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < arns {
                    loop {
                        let permit = limiter.acquire().await;
                        let ok = service.as_ref().is_none_or(|s| s.call(Instant::now()));
                        tokio::time::sleep(LATENCY).await;
                        if ok {
                            permit.success();
                            break;
                        }
                        permit.throttled();
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        t0.elapsed()
    }

    struct Figures {
        calls: u64,
        arns: usize,
        elapsed: Duration,
        ideal: Duration,
        per_instance: Vec<Duration>,
    }

    impl Figures {
        fn calls_per_arn(&self) -> f64 {
            self.calls as f64 / self.arns as f64
        }
        fn time_ratio(&self) -> f64 {
            self.elapsed.as_secs_f64() / self.ideal.as_secs_f64()
        }
    }

    /// `instances` processes of `arns` ARNs each, one limiter each (max 32), sharing one
    /// service limit of `rate` calls/s.
    async fn simulate(rate: f64, burst: f64, instances: usize, arns: usize) -> Figures {
        let service = Service::new(rate, burst);
        let limiters: Vec<_> = (0..instances).map(|_| Limiter::new(32)).collect();
        let runs: Vec<_> = limiters
            .iter()
            .map(|l| tokio::spawn(instance(l.clone(), Some(service.clone()), arns, 32)))
            .collect();
        let mut per_instance = Vec::new();
        for run in runs {
            per_instance.push(run.await.unwrap());
        }
        let total = instances * arns;
        let figures = Figures {
            calls: service.calls.load(Ordering::Relaxed),
            arns: total,
            elapsed: per_instance.iter().copied().max().unwrap(),
            ideal: Duration::from_secs_f64(total as f64 / rate),
            per_instance,
        };
        eprintln!(
            "R={rate}/s burst {burst}, {instances} x {arns}: {} calls ({:.3}/ARN), {:.2?} = {:.3} x N/R, instances {:.2?}",
            figures.calls,
            figures.calls_per_arn(),
            figures.elapsed,
            figures.time_ratio(),
            figures.per_instance
        );
        figures
    }

    #[tokio::test(start_paused = true)]
    async fn one_instance_at_100_per_s_stays_near_the_limit() {
        // GIVEN a service limit of 100 calls/s (burst 10), 20 ms per call, max 32 in flight
        // WHEN 2,000 ARNs go through one limiter
        let f = simulate(100.0, 10.0, 1, 2000).await;
        // THEN at most 10 % extra calls, and within 15 % of the fastest possible time
        assert!(f.calls_per_arn() <= 1.10, "{} calls", f.calls);
        assert!(f.time_ratio() <= 1.15, "{:?}", f.elapsed);
    }

    #[tokio::test(start_paused = true)]
    async fn four_instances_share_one_limit() {
        // GIVEN 4 processes, each with its own limiter, sharing one 100 calls/s limit
        // WHEN each deletes 500 ARNs
        let f = simulate(100.0, 10.0, 4, 500).await;
        // THEN at most 25 % extra calls in total, and all done within 25 % of 20 s
        assert!(f.calls_per_arn() <= 1.25, "{} calls", f.calls);
        assert!(f.time_ratio() <= 1.25, "{:?}", f.per_instance);
        // AND none took much more than its share: no instance finished in under half the time
        let half = f.ideal / 2;
        assert!(
            f.per_instance.iter().all(|&t| t >= half),
            "{:?}",
            f.per_instance
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_instance_at_20_per_s_stays_near_the_limit() {
        // GIVEN a service limit of 20 calls/s (burst 10)
        // WHEN 300 ARNs go through one limiter with max 32
        let f = simulate(20.0, 10.0, 1, 300).await;
        // THEN within 15 % of the fastest possible time (15 s)
        assert!(f.time_ratio() <= 1.15, "{:?}", f.elapsed);
        // AND at most 10 % extra calls besides the first round trip's: 32 calls start before
        // any answer, 22 of them are refused, and the 10 that succeed each start a next call
        // before the refusals of the same round trip are in; no limiter that starts at
        // MAX_CONCURRENCY (as it must, not to slow an unthrottled service) avoids those 32.
        assert!(f.calls as f64 <= 1.10 * 300.0 + 32.0, "{} calls", f.calls);
    }

    #[tokio::test(start_paused = true)]
    async fn no_throttling_means_no_slowdown() {
        // GIVEN a service that never throttles, 20 ms per call, max 32 in flight
        let limiter = Limiter::new(32);
        // WHEN 2,000 ARNs go through the limiter
        let elapsed = instance(limiter.clone(), None, 2000, 32).await;
        // THEN they take ceil(2000 / 32) rounds of 20 ms, give or take 5 %
        let ideal = LATENCY * 2000u32.div_ceil(32);
        eprintln!("no throttling: {elapsed:?} vs {ideal:?}");
        assert!(
            elapsed.as_secs_f64() <= 1.05 * ideal.as_secs_f64(),
            "{elapsed:?}"
        );
        assert_eq!(limiter.in_flight_limit(), 32);
        assert_eq!(limiter.rate_limit(), None);
    }
}
