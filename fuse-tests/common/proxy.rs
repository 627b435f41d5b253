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
}

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
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();

    let (mut c_in, s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let mut c_out = client.try_clone().unwrap();
    let sh = shared.clone();
    let arm = reset_at.clone();
    let sent_so_far = sent.clone();
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
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = s_out.shutdown(Shutdown::Write);
    });
    let sh = shared.clone();
    let mut s_in = server.try_clone().unwrap();
    let delay = std::thread::spawn(move || {
        for (at, data) in rx {
            let lat = sh.faults.lock().unwrap().latency;
            let due = at + lat;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            wait_while_hung(&sh);
            if s_in.write_all(&data).is_err() {
                break;
            }
        }
    });
    let mut from_server = server.try_clone().unwrap();
    let mut to_client = client.try_clone().unwrap();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from_server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_while_hung(&shared);
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
    shared.live.lock().unwrap().retain(|(i, _)| *i != id);
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
