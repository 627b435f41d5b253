//! A real nginx on 127.0.0.1 running the shipped cache tier config
//! (`deploy/nginx/datastore-cache.conf`), with only its lines marked SITE set for the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

/// Where nginx is: $DATASTORE_TEST_NGINX, or Debian's. Missing, the test fails.
fn binary() -> PathBuf {
    let p = std::env::var_os("DATASTORE_TEST_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    assert!(
        p.exists(),
        "nginx not found at {} (set DATASTORE_TEST_NGINX): run ./scripts/test, which installs it",
        p.display()
    );
    p
}

/// The shipped config with the SITE lines pointed at this test's store, secret, cache
/// directory and port.
fn site_config(store_port: u16, secret: &str, cache: &Path, port: u16) -> String {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/datastore-cache.conf");
    let text = std::fs::read_to_string(&shipped).expect("the shipped nginx config");
    let mut out = String::new();
    let mut set = 0;
    for line in text.lines() {
        let mut site = |s: String| {
            set += 1;
            s
        };
        let line = match line.split("# SITE ").nth(1).map(str::trim) {
            Some("store") => site(format!("    server 127.0.0.1:{store_port};")),
            Some("secret") => site(format!("    \"{secret}\" 0;")),
            Some("cache") => site(format!(
                "proxy_cache_path {} levels=1:2 keys_zone=datastore:8m max_size=1g inactive=30d use_temp_path=off;",
                cache.display()
            )),
            Some("listen") => site(format!("    listen 127.0.0.1:{port};")),
            Some("scheme") => site("        proxy_pass http://datastore_store;".into()),
            Some("host") if line.contains("proxy_ssl_name") => {
                site("        proxy_ssl_name 127.0.0.1;".into())
            }
            Some("host") => site(format!(
                "        proxy_set_header Host 127.0.0.1:{store_port};"
            )),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(set, 7, "the shipped config's SITE lines changed");
    out
}

impl Nginx {
    /// Starts the tier in front of the S3 server on `store_port`.
    pub fn start(store_port: u16, secret: &str) -> Nginx {
        Nginx::start_edited(store_port, secret, |c| c)
    }

    /// Starts the tier with its site config (the shipped one, SITE lines set) passed through
    /// `edit` first: for variants measured against the shipped config.
    pub fn start_edited(
        store_port: u16,
        secret: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("datastore-nginx-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["cache", "tmp", "logs"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = super::free_port();
        std::fs::write(
            d.join("datastore-cache.conf"),
            edit(site_config(store_port, secret, &d.join("cache"), port)),
        )
        .unwrap();
        let main = format!(
            "daemon off;\nworker_processes 2;\npid {0}/nginx.pid;\nerror_log {0}/logs/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  client_body_temp_path {0}/tmp/body;\n  proxy_temp_path {0}/tmp/proxy;\n  \
             fastcgi_temp_path {0}/tmp/fastcgi;\n  uwsgi_temp_path {0}/tmp/uwsgi;\n  \
             scgi_temp_path {0}/tmp/scgi;\n  include {0}/datastore-cache.conf;\n}}\n",
            d.display()
        );
        std::fs::write(d.join("nginx.conf"), main).unwrap();
        let child = Command::new(binary())
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("logs/error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            port,
            child: Some(child),
            dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = n.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited ({status}): {}", n.error_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    /// The files of its cache.
    pub fn cached(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("cache"), &mut out);
        out
    }

    /// Stops it now: SIGTERM (nginx's fast shutdown, which drops its connections) to the
    /// master this test started, which ends its workers; SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) of the process this test started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}
