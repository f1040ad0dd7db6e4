//! The framework's floor for `benches/load.py`: a pingora reverse proxy with
//! no filters at all (no auth, no header rewrite), built from the same
//! pingora version and profile as authgate. What authgate costs above this
//! line is ours; what this costs above nginx is the framework's.
//!
//! `pingora_floor LISTEN UPSTREAM` (both `ip:port`); without arguments (as
//! when `cargo bench` runs every target) it prints a note and exits.

// The same allocator as authgate's binary, so that the floor differs from
// authgate only by authgate's own work.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Floor(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(listen), Some(upstream)) = (args.first(), args.get(1)) else {
        eprintln!(
            "pingora_floor: no LISTEN UPSTREAM given, nothing to serve (benches/load.py runs it)"
        );
        return;
    };
    let upstream = upstream.parse().unwrap_or_else(|e| {
        eprintln!("pingora_floor: UPSTREAM {upstream:?} is not ip:port: {e}");
        std::process::exit(2)
    });
    let threads = std::env::var("FLOOR_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let conf = ServerConf {
        threads,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Floor(upstream));
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
