//! A fault-injecting TCP proxy between the code under test and the S3 server, on 127.0.0.1.
//!
//! Faults are injected at the network level, where real outages happen, so the whole client
//! stack (HTTP, retries, timeouts) is exercised, not a mock of it:
//! - `down`: the listening socket is closed (connections refused) and every live connection
//!   is reset, as when the server process dies; `up` listens again on the same port.
//! - `hang`: connections are accepted but nothing is forwarded either way, as when the server
//!   or the network stalls.
//! - `latency`: every byte from the client reaches the server that much later (a one-way
//!   delay, pipelined like a real link, so bulk transfers are not serialised per chunk).
//! - `resets`: each request (a burst of client bytes) has this probability of getting its
//!   connection reset, at a random point of the response.
//! - `slow_downs`: each GET has this probability of being answered `503 Slow Down` by the
//!   proxy, as S3 answers when it throttles.
//! - `write_slow_downs`: each PUT (conditional ones included) whose path contains
//!   `writes_matching` has this probability of being answered `503 Slow Down`, and the
//!   first `first_writes_slowed` of them always are: its body is read and dropped, so the
//!   server never sees it and the connection stays in step.
//!
//! It also shapes a link as object storage's is ([`Link`]): a time to first byte added to
//! each response (once per request: a GET pays it before its body, a PUT after its body), a
//! rate per connection and a rate over all connections together (the NIC), each way, and
//! stalls (a share of requests whose first byte is held much longer). [`Counters`] keep the
//! requests in flight, so a run can say how many a client kept going.
//!
//! Every proxy thread ends when its sockets close; the accept loop ends when the proxy drops.

use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does to traffic now; changed at any time with [`Proxy::set`].
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub hang: bool,
    pub latency: Duration,
    /// Probability, per request, that its connection is reset.
    pub resets: f64,
    /// Probability, per GET, that the proxy answers `503 Slow Down` itself, as S3 does when
    /// it throttles, without the server seeing the request.
    pub slow_downs: f64,
    /// Probability, per PUT whose request line contains `writes_matching` (every PUT when
    /// empty), that the proxy answers `503 Slow Down` itself after reading its body.
    pub write_slow_downs: f64,
    /// The next this many PUTs matching `writes_matching` are answered `503 Slow Down`
    /// whatever `write_slow_downs` draws: a retry proven, not left to chance.
    pub first_writes_slowed: u64,
    pub writes_matching: &'static str,
    /// The shape of the link.
    pub link: Link,
}

/// A link shaped like object storage's: S3 answers a request in 10-30 ms and serves each
/// connection at roughly 90 MB/s, so a client fills a fast NIC only with many requests in
/// flight. Rates are bytes per second, each way (a NIC is full duplex); `None` is unlimited.
#[derive(Clone, Debug, Default)]
pub struct Link {
    /// Added before the first byte of each response, counted from the request's last byte.
    pub first_byte: Duration,
    /// Each connection's rate.
    pub per_connection: Option<u64>,
    /// The rate of all connections together.
    pub total: Option<u64>,
    /// Probability, per request, that its first byte is held `stall` longer still.
    pub stalls: f64,
    pub stall: Duration,
}

/// What the proxy has done, for reports and for asserting a fault really happened.
#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub resets: AtomicU64,
    pub slow_downs: AtomicU64,
    pub write_slow_downs: AtomicU64,
    /// Bytes the server sent towards clients (responses, headers included).
    pub bytes_down: AtomicU64,
    /// Requests held back by [`Link::stalls`].
    pub stalls: AtomicU64,
    /// Requests sent whose response has not ended yet, now and at most.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// The time integral of `in_flight`, in request-nanoseconds: its growth over an interval,
    /// divided by the interval, is the mean number of requests in flight.
    pub in_flight_ns: AtomicU64,
}

impl Counters {
    /// Adds the time `in_flight` held its value until now to the integral, then moves it.
    fn move_in_flight(&self, since: &Mutex<Instant>, up: bool) {
        let mut at = since.lock().unwrap();
        let now = Instant::now();
        let n = self.in_flight.load(Ordering::SeqCst);
        let ns = now.duration_since(*at).as_nanos() as u64;
        self.in_flight_ns.fetch_add(n * ns, Ordering::SeqCst);
        *at = now;
        let n = match up {
            true => n + 1,
            false => n.saturating_sub(1),
        };
        self.in_flight.store(n, Ordering::SeqCst);
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
    }

    /// The integral of requests in flight up to now (see `in_flight_ns`).
    pub fn in_flight_ns_now(&self) -> u64 {
        self.in_flight_ns.load(Ordering::SeqCst)
    }
}

/// A rate: the time at which the link is next free, moved on by each reservation. An idle
/// link keeps no more credit than [`SLACK`], so no burst is faster than the rate for longer
/// than that; within it, the oversleeping of each wait is made up.
struct Pace {
    next: Mutex<Instant>,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            next: Mutex::new(Instant::now()),
        }
    }

    /// Reserves the link for `n` bytes at `rate`; returns when they have been carried.
    fn reserve(&self, rate: u64, n: usize) -> Instant {
        let mut next = self.next.lock().unwrap();
        let now = Instant::now();
        let start = (*next).max(now.checked_sub(SLACK).unwrap_or(now));
        *next = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
        *next
    }
}

/// Waits until `n` bytes have been carried at the rates of the link, each way's own.
fn pace(link: &Link, connection: &Pace, nic: &Pace, n: usize) {
    let mut until = Instant::now();
    if let Some(rate) = link.per_connection {
        until = until.max(connection.reserve(rate, n));
    }
    if let Some(rate) = link.total {
        until = until.max(nic.reserve(rate, n));
    }
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

/// How far behind the clock a rate's reservations may start (see [`Pace`]).
const SLACK: Duration = Duration::from_millis(20);

/// The largest piece carried at once on a shaped link: small enough that a rate holds
/// within a few per cent over a fraction of a second.
const SHAPED_PIECE: usize = 16 << 10;

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    /// Bumped by `down`: connections of an older epoch are reset.
    epoch: AtomicU64,
    listening: AtomicBool,
    stop: AtomicBool,
    /// Both sockets of every open connection, by connection number, so `down` can reset them.
    live: Mutex<Vec<(u64, TcpStream)>>,
    next_id: AtomicU64,
    counters: Counters,
    rng: Mutex<rand::rngs::SmallRng>,
    /// What is left of `Faults::first_writes_slowed` since it was set.
    writes_to_slow: AtomicU64,
    /// The NIC's rate, each way: towards clients and towards the server.
    nic_down: Pace,
    nic_up: Pace,
    /// When `counters.in_flight` last changed.
    in_flight_since: Mutex<Instant>,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream)),
            faults: Mutex::new(Faults::default()),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            live: Mutex::new(vec![]),
            next_id: AtomicU64::new(0),
            counters: Counters::default(),
            rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)),
            writes_to_slow: AtomicU64::new(0),
            nic_down: Pace::new(),
            nic_up: Pace::new(),
            in_flight_since: Mutex::new(Instant::now()),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(s, listener, port));
        Proxy { port, shared }
    }

    pub fn set(&self, faults: Faults) {
        self.shared
            .writes_to_slow
            .store(faults.first_writes_slowed, Ordering::SeqCst);
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// The server "dies": new connections are refused and live ones reset.
    pub fn down(&self) {
        self.shared.listening.store(false, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for (_, s) in self.shared.live.lock().unwrap().iter() {
            reset(s);
        }
    }

    /// The server is back on the same address.
    pub fn up(&self) {
        self.shared.listening.store(true, Ordering::SeqCst);
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.down();
    }
}

/// Closes a connection with a TCP reset rather than an orderly FIN.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, port: u16) {
    let mut listener = Some(listener);
    while !shared.stop.load(Ordering::SeqCst) {
        let want = shared.listening.load(Ordering::SeqCst);
        match (&listener, want) {
            (Some(_), false) => listener = None,
            (None, true) => {
                // The port was ours a moment ago; rebinding it is immediate on loopback.
                listener = TcpListener::bind(("127.0.0.1", port)).ok();
                if let Some(l) = &listener {
                    l.set_nonblocking(true).unwrap();
                }
            }
            _ => {}
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((client, _)) => {
                let shared = shared.clone();
                std::thread::spawn(move || serve(shared, client));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// One client connection: client→server through a delay line, server→client directly, with
/// a reset armed by the request that rolled one.
fn serve(shared: Arc<Shared>, client: TcpStream) {
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    let Ok(server) = TcpStream::connect(shared.upstream) else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let epoch = shared.epoch.load(Ordering::SeqCst);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut live = shared.live.lock().unwrap();
        live.push((id, client.try_clone().unwrap()));
        live.push((id, server.try_clone().unwrap()));
    }
    if epoch != shared.epoch.load(Ordering::SeqCst) {
        reset(&client);
        reset(&server);
    }
    // Response bytes after which the connection is reset (u64::MAX: never), and how many have
    // been sent, so that a reset lands inside the response to the request that armed it.
    let reset_at = Arc::new(AtomicU64::new(u64::MAX));
    let sent = Arc::new(AtomicU64::new(0));
    let exchange = Arc::new(Exchange::default());
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();

    let (mut c_in, s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let mut c_out = client.try_clone().unwrap();
    let sh = shared.clone();
    let arm = reset_at.clone();
    let sent_so_far = sent.clone();
    let ex = exchange.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut last: Option<Instant> = None;
        // Body bytes of a throttled PUT still to be dropped before it is answered.
        let mut dropping: Option<u64> = None;
        let slow_down = b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n";
        loop {
            let n = match c_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(left) = dropping {
                let left = left.saturating_sub(n as u64);
                dropping = (left > 0).then_some(left);
                if left == 0 && c_out.write_all(slow_down).is_err() {
                    break;
                }
                last = Some(Instant::now());
                continue;
            }
            // A request starts after a pause; the rest of a request body follows at once.
            let new_request = last.is_none_or(|t| t.elapsed() > Duration::from_millis(2));
            last = Some(Instant::now());
            if !new_request {
                ex.more_of_the_request();
                if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
                continue;
            }
            let faults = sh.faults.lock().unwrap().clone();
            sh.counters.requests.fetch_add(1, Ordering::Relaxed);
            // Only a whole GET (headers, no body) is answered here, so the connection stays in
            // step: no part of the request reaches the server.
            let whole_get = buf[..n].starts_with(b"GET ") && buf[..n].ends_with(b"\r\n\r\n");
            if whole_get
                && faults.slow_downs > 0.0
                && sh.rng.lock().unwrap().gen_bool(faults.slow_downs.min(1.0))
            {
                sh.counters.slow_downs.fetch_add(1, Ordering::Relaxed);
                if c_out.write_all(slow_down).is_err() {
                    break;
                }
                continue;
            }
            if faults.write_slow_downs > 0.0 || faults.first_writes_slowed > 0 {
                if let Some(body) = put_body(&buf[..n], faults.writes_matching) {
                    let forced = sh
                        .writes_to_slow
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if forced
                        || sh
                            .rng
                            .lock()
                            .unwrap()
                            .gen_bool(faults.write_slow_downs.min(1.0))
                    {
                        sh.counters.write_slow_downs.fetch_add(1, Ordering::Relaxed);
                        if body == 0 {
                            if c_out.write_all(slow_down).is_err() {
                                break;
                            }
                        } else {
                            dropping = Some(body);
                        }
                        continue;
                    }
                }
            }
            if faults.resets > 0.0 && arm.load(Ordering::SeqCst) == u64::MAX {
                let mut rng = sh.rng.lock().unwrap();
                if rng.gen_bool(faults.resets.min(1.0)) {
                    let at = sent_so_far.load(Ordering::SeqCst) + rng.gen_range(0..256 << 10);
                    arm.store(at, Ordering::SeqCst);
                }
            }
            ex.request(&sh, &faults.link, &buf[..n]);
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = s_out.shutdown(Shutdown::Write);
    });
    let sh = shared.clone();
    let mut s_in = server.try_clone().unwrap();
    let delay = std::thread::spawn(move || {
        let up = Pace::new();
        for (at, data) in rx {
            let (lat, link) = {
                let f = sh.faults.lock().unwrap();
                (f.latency, f.link.clone())
            };
            let due = at + lat;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            wait_while_hung(&sh);
            pace(&link, &up, &sh.nic_up, data.len());
            if s_in.write_all(&data).is_err() {
                break;
            }
        }
    });
    let mut from_server = server.try_clone().unwrap();
    let mut to_client = client.try_clone().unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let down = Pace::new();
    loop {
        let link = shared.faults.lock().unwrap().link.clone();
        let shaped = link.per_connection.is_some() || link.total.is_some();
        let most = if shaped { SHAPED_PIECE } else { buf.len() };
        let n = match from_server.read(&mut buf[..most]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_while_hung(&shared);
        exchange.hold_first_byte();
        pace(&link, &down, &shared.nic_down, n);
        if epoch != shared.epoch.load(Ordering::SeqCst) {
            break;
        }
        let limit = reset_at.load(Ordering::SeqCst);
        let done = sent.load(Ordering::SeqCst);
        let n_ok = if done + n as u64 > limit {
            (limit - done.min(limit)) as usize
        } else {
            n
        };
        if to_client.write_all(&buf[..n_ok]).is_err() {
            break;
        }
        sent.fetch_add(n_ok as u64, Ordering::SeqCst);
        shared
            .counters
            .bytes_down
            .fetch_add(n_ok as u64, Ordering::Relaxed);
        exchange.response(&shared, &buf[..n_ok]);
        if n_ok < n {
            shared.counters.resets.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            reset(&server);
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Write);
    let _ = reader.join();
    let _ = delay.join();
    exchange.end(&shared);
    shared.live.lock().unwrap().retain(|(i, _)| *i != id);
}

/// Where a connection's current request and its response are: when the response may start,
/// and how much of it is still to come (a request is in flight from its first byte sent to
/// its response's last byte received; HTTP/1.1 sends the next only after that).
#[derive(Default)]
struct Exchange {
    state: Mutex<ExchangeState>,
}

#[derive(Default)]
struct ExchangeState {
    in_flight: bool,
    /// A HEAD: its response has a Content-Length but no body.
    head: bool,
    /// The earliest the response's first byte may go, and the hold it was set with (a
    /// request body arriving later moves it on).
    first_byte: Option<(Instant, Duration)>,
    /// Body bytes of the response still to come, once its head has been seen.
    left: Option<u64>,
}

impl Exchange {
    /// A new request: its response waits for the first byte's time (and a stall, if one is
    /// drawn); it is in flight.
    fn request(&self, shared: &Shared, link: &Link, burst: &[u8]) {
        let mut hold = link.first_byte;
        if link.stalls > 0.0 && shared.rng.lock().unwrap().gen_bool(link.stalls.min(1.0)) {
            shared.counters.stalls.fetch_add(1, Ordering::Relaxed);
            hold += link.stall;
        }
        let mut st = self.state.lock().unwrap();
        st.head = burst.starts_with(b"HEAD ");
        st.left = None;
        st.first_byte = (!hold.is_zero()).then(|| (Instant::now() + hold, hold));
        if !st.in_flight {
            st.in_flight = true;
            shared
                .counters
                .move_in_flight(&shared.in_flight_since, true);
        }
    }

    /// More of the request (a body): the first byte's time counts from its last byte.
    fn more_of_the_request(&self) {
        if let Some((due, hold)) = self.state.lock().unwrap().first_byte.as_mut() {
            *due = (*due).max(Instant::now() + *hold);
        }
    }

    /// Waits, before the first byte of a response, until it may go.
    fn hold_first_byte(&self) {
        let due = self.state.lock().unwrap().first_byte.take();
        if let Some((due, _)) = due {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    /// Bytes of the response sent on: at its end, the request is no longer in flight.
    /// (A response without a Content-Length ends with the next request, or the connection.)
    fn response(&self, shared: &Shared, bytes: &[u8]) {
        let mut st = self.state.lock().unwrap();
        if !st.in_flight {
            return;
        }
        let left = match st.left {
            Some(left) => left.saturating_sub(bytes.len() as u64),
            None => {
                let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return;
                };
                let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                let status = head.split_whitespace().nth(1).unwrap_or("");
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let body = match (st.head, status) {
                    (true, _) | (_, "204" | "304") => 0,
                    _ => match length {
                        Some(l) => l,
                        None => return,
                    },
                };
                body.saturating_sub((bytes.len() - end - 4) as u64)
            }
        };
        st.left = Some(left);
        if left == 0 {
            st.in_flight = false;
            st.left = None;
            shared
                .counters
                .move_in_flight(&shared.in_flight_since, false);
        }
    }

    /// The connection is gone: so is its request.
    fn end(&self, shared: &Shared) {
        let mut st = self.state.lock().unwrap();
        if std::mem::take(&mut st.in_flight) {
            shared
                .counters
                .move_in_flight(&shared.in_flight_since, false);
        }
    }
}

/// For the first bytes of a request that are a PUT whose request line contains `matching`
/// with all its headers and a Content-Length: the body bytes that have not arrived yet.
fn put_body(burst: &[u8], matching: &str) -> Option<u64> {
    let head_end = burst.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&burst[..head_end]).ok()?;
    let line = head.lines().next()?;
    if !line.starts_with("PUT ") || !line.contains(matching) {
        return None;
    }
    let mut length = None;
    for h in head.lines().skip(1).take_while(|h| !h.is_empty()) {
        let (name, value) = h.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<u64>().ok(),
            // The client waits for an answer before its body: not a request to throttle here.
            "expect" | "transfer-encoding" => return None,
            _ => {}
        }
    }
    length.map(|l| l.saturating_sub((burst.len() - head_end) as u64))
}

fn wait_while_hung(shared: &Shared) {
    while shared.faults.lock().unwrap().hang && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
