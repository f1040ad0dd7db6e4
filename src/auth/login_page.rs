//! The plain login and logout pages: no external assets, no script needed,
//! password-manager friendly. Only known `reason`/`error` values are shown,
//! as fixed sentences; the user's input is never echoed except `rd`, which
//! is escaped.

use pingora::http::RequestHeader;

use crate::app::State;
use crate::error::{html_escape, Reply};
use crate::session::DenyReason;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:22rem;margin:12vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .3rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;cursor:pointer}\
.msg{padding:.6rem;border-radius:4px;background:#fff4e5;border:1px solid #f0c36d;margin-bottom:1rem}\
.err{background:#fdecea;border-color:#f5a9a0}";

/// A page with its style allowed by a per-response CSP nonce (no
/// `'unsafe-inline'`, no external asset).
fn page_reply(title: &str, body: &str) -> Reply {
    let nonce = crate::auth::jwt::random_b64::<16>();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head><body><main>{body}</main></body></html>"
    );
    Reply::html(200, html)
        .with(
            "content-security-policy",
            format!("default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        )
        .with("x-frame-options", "DENY")
}

fn reason_text(r: DenyReason) -> Option<&'static str> {
    Some(match r {
        DenyReason::Idle => "You were signed out after a period of inactivity.",
        DenyReason::Expired => "Your session has expired. Please sign in again.",
        DenyReason::Lifetime => "Your session reached its maximum length. Please sign in again.",
        DenyReason::Replaced => "You signed in somewhere else, which ended this session.",
        DenyReason::Revoked => "Your session was ended by the server.",
        DenyReason::Logout => "You have signed out.",
        DenyReason::Invalid | DenyReason::Missing => return None,
    })
}

fn error_text(e: &str) -> Option<&'static str> {
    Some(match e {
        "invalid_credentials" => "Wrong username or password.",
        "session_active" => "You are already signed in elsewhere. Sign out there first, or wait until that session ends.",
        "rate_limited" => "Too many failed attempts. Please wait a minute and try again.",
        "unavailable" => "The service is busy. Please try again in a moment.",
        "invalid_request" => "Please enter a username and a password.",
        _ => return None,
    })
}

fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET {prefix}/login?rd=&reason=&error=`
pub fn login_page(st: &State, req: &RequestHeader) -> Reply {
    let rd = query_param(req, "rd").map(|rd| super::endpoints::safe_redirect(st, Some(&rd)));
    let mut notes = String::new();
    if let Some(t) = query_param(req, "error").as_deref().and_then(error_text) {
        notes.push_str(&format!("<p class=\"msg err\" role=\"alert\">{t}</p>"));
    } else if let Some(t) = query_param(req, "reason")
        .as_deref()
        .and_then(DenyReason::parse)
        .and_then(reason_text)
    {
        notes.push_str(&format!("<p class=\"msg\" role=\"status\">{t}</p>"));
    }
    let rd_field = rd
        .map(|rd| {
            format!(
                "<input type=\"hidden\" name=\"rd\" value=\"{}\">",
                html_escape(&rd)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{notes}<form method=\"post\" action=\"{action}\">{rd_field}\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
        action = html_escape(&st.paths.signin),
    );
    page_reply("Sign in", &body)
}

/// `GET {prefix}/logout`: a confirmation page; it never ends a session itself.
pub fn logout_page(st: &State) -> Reply {
    let body = format!(
        "<h1>Sign out</h1><p>Do you want to sign out?</p>\
<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
        html_escape(&st.paths.logout)
    );
    page_reply("Sign out", &body)
}
