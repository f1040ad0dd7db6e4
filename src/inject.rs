//! Zero-change mode for legacy apps (`routes[].inject_client`): the
//! gateway adds its browser client to HTML pages from the upstream, so an
//! unmodified app gets the idle warning and a clean logout.
//!
//! Streaming, with Cloudflare's lol_html: each chunk is rewritten as it
//! passes; nothing buffers a whole page. The upstream is asked for an
//! uncompressed response (`Accept-Encoding` removed on these routes); a
//! response that is compressed anyway, or not HTML, passes untouched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lol_html::html_content::ContentType;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{element, OutputSink};

/// Collects the rewriter's output between chunks.
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(chunk);
        }
    }
}

impl Sink {
    fn take(&self) -> Bytes {
        self.0
            .lock()
            .map(|mut v| Bytes::from(std::mem::take(&mut *v)))
            .unwrap_or_default()
    }
}

/// One response being rewritten. `Mutex` only to make it `Sync` for
/// pingora's per-request context; it is never contended.
pub struct Injector {
    rewriter: Mutex<Option<HtmlRewriter<'static, Sink>>>,
    sink: Sink,
}

/// The tag added to every page: the client script, started by its
/// `data-authgate-auto` attribute (no inline script, so an app's CSP that
/// allows same-origin scripts keeps working).
pub fn script_tag(prefix: &str) -> String {
    format!("<script src=\"{prefix}/client.js\" data-authgate-auto=\"1\" defer></script>")
}

impl Injector {
    pub fn new(tag: String) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let (d1, d2) = (done.clone(), done);
        let (t1, t2) = (tag.clone(), tag);
        let settings = Settings::new_send()
            .append_element_content_handler(element!("head", move |el| {
                if !d1.swap(true, Ordering::Relaxed) {
                    el.append(&t1, ContentType::Html);
                }
                Ok(())
            }))
            // Pages without <head>: first thing in <body>.
            .append_element_content_handler(element!("body", move |el| {
                if !d2.swap(true, Ordering::Relaxed) {
                    el.prepend(&t2, ContentType::Html);
                }
                Ok(())
            }));
        let sink = Sink::default();
        Self {
            rewriter: Mutex::new(Some(HtmlRewriter::new(settings, sink.clone()))),
            sink,
        }
    }

    /// Rewrites one chunk; at the end of the stream flushes the rest.
    /// On a rewriting error the rest of the page passes unmodified.
    pub fn process(&self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let Ok(mut guard) = self.rewriter.lock() else {
            return;
        };
        let Some(rw) = guard.as_mut() else { return };
        let input = body.take().unwrap_or_default();
        if rw.write(&input).is_err() {
            *guard = None;
            let mut out = self.sink.take().to_vec();
            out.extend_from_slice(&input);
            *body = Some(Bytes::from(out));
            return;
        }
        if end_of_stream {
            if let Some(rw) = guard.take() {
                let _ = rw.end();
            }
        }
        *body = Some(self.sink.take());
    }
}

/// True for a response the injector may rewrite.
pub fn is_rewritable_html(resp: &pingora::http::ResponseHeader) -> bool {
    let html = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/html")
        });
    let identity = resp
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
    html && identity && resp.status.is_success()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> String {
        let inj = Injector::new(script_tag("/auth"));
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut b = Some(Bytes::copy_from_slice(c.as_bytes()));
            inj.process(&mut b, i == chunks.len() - 1);
            out.extend_from_slice(&b.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_script_goes_into_head_once_even_split_across_chunks() {
        let out = run(&[
            "<!doctype html><html><he",
            "ad><title>x</title></head><body><p>hi</p></bo",
            "dy></html>",
        ]);
        assert_eq!(out, "<!doctype html><html><head><title>x</title><script src=\"/auth/client.js\" data-authgate-auto=\"1\" defer></script></head><body><p>hi</p></body></html>");
    }

    #[test]
    fn pages_without_head_get_it_first_in_body_and_fragments_pass() {
        let out = run(&["<body><p>x</p></body>"]);
        assert!(
            out.starts_with("<body><script src=\"/auth/client.js\""),
            "{out}"
        );
        assert_eq!(run(&["<p>no head or body</p>"]), "<p>no head or body</p>");
        // a <head> inside a comment or a script is not a head
        let out = run(&["<!-- <head> --><script>var s='<head>'</script><p>x</p>"]);
        assert!(!out.contains("client.js"), "{out}");
    }
}
