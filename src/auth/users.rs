//! The users file: usernames, argon2id PHC hashes, roles.
//!
//! Usernames are matched case-insensitively; the spelling in the file is the
//! canonical one that upstreams receive in `X-Auth-User`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::config::file::{self, Collector, Problems, Section};
use crate::config::{valid_role, valid_username};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Canonical spelling from the file.
    pub username: Arc<str>,
    pub password_hash: String,
    pub roles: Arc<Roles>,
    pub disabled: bool,
}

/// A user's roles, with the `X-Auth-Roles` value built once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub list: Vec<String>,
    pub header: http::HeaderValue,
}

impl Roles {
    pub fn new(list: Vec<String>) -> Self {
        // Role names are validated to a header-safe alphabet.
        let header = http::HeaderValue::from_str(&list.join(","))
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        Self { list, header }
    }

    /// True when the user has ANY of `required` (or nothing is required).
    pub fn satisfies(&self, required: &[String]) -> bool {
        required.is_empty()
            || required
                .iter()
                .any(|r| self.list.iter().any(|have| have == r))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    by_key: HashMap<String, User>,
}

const USERS_KEYS: &[&str] = &["users"];
const USER_KEYS: &[&str] = &["username", "password_hash", "roles", "disabled"];

impl Users {
    pub fn load(path: &Path) -> Result<Users, Problems> {
        Self::from_str(&file::read_text(path)?, path)
    }

    pub fn from_str(text: &str, path: &Path) -> Result<Users, Problems> {
        file::parse_with(text, path, |tree, c| Some(Self::build(tree, c)))
    }

    fn build(tree: Value, c: &mut Collector) -> Users {
        let mut top = Section::new(c, "", Some(tree), USERS_KEYS);
        let list = top.list(c, "users");
        top.finish(c);
        let mut by_key = HashMap::new();
        for (i, v) in list.into_iter().enumerate() {
            let base = format!("users[{i}]");
            let mut s = Section::new(c, &base, Some(v), USER_KEYS);
            let username = s.opt_string(c, "username");
            let hash = s.string(c, "password_hash", "");
            let roles = s.string_list(c, "roles");
            let disabled = s.bool(c, "disabled", false);
            s.finish(c);
            let mut ok = true;
            let username = match username {
                Some(u) => u,
                None => {
                    if !c
                        .problems
                        .iter()
                        .any(|p| p.key == format!("{base}.username"))
                    {
                        c.err(format!("{base}.username"), "is required");
                    }
                    ok = false;
                    String::new()
                }
            };
            if ok && !valid_username(&username) {
                c.err(
                    format!("{base}.username"),
                    format!("`{username}` is not a username ([A-Za-z0-9._@-], 1-64 characters)"),
                );
                ok = false;
            }
            match argon2::PasswordHash::new(&hash) {
                Ok(h) if h.algorithm.as_str() == "argon2id" => {
                    if let Err(msg) = check_params(&h) {
                        c.err(format!("{base}.password_hash"), msg);
                        ok = false;
                    }
                }
                Ok(_) => {
                    c.err(
                        format!("{base}.password_hash"),
                        "must be an argon2id hash; create one with `authgate hash-password`",
                    );
                    ok = false;
                }
                Err(_) => {
                    c.err(format!("{base}.password_hash"), "is not an argon2id PHC string ($argon2id$v=19$...); create one with `authgate hash-password`");
                    ok = false;
                }
            }
            for (j, r) in roles.iter().enumerate() {
                if !valid_role(r) {
                    c.err(
                        format!("{base}.roles[{j}]"),
                        format!("`{r}` is not a role name ([A-Za-z0-9._:-], 1-64)"),
                    );
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let key = username.to_ascii_lowercase();
            if by_key.contains_key(&key) {
                c.err(
                    format!("{base}.username"),
                    format!("`{username}` appears twice (usernames are case-insensitive)"),
                );
                continue;
            }
            by_key.insert(
                key,
                User {
                    username: Arc::from(username.as_str()),
                    password_hash: hash,
                    roles: Arc::new(Roles::new(roles)),
                    disabled,
                },
            );
        }
        Users { by_key }
    }

    /// Case-insensitive lookup. `name` is not trusted: it is only compared.
    pub fn get(&self, name: &str) -> Option<&User> {
        if !valid_username(name) {
            return None;
        }
        self.by_key.get(&name.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.by_key.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Largest argon2 cost accepted: beyond it a signin would take seconds or
/// gigabytes (and a hash with absurd parameters could never verify).
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

fn check_params(h: &argon2::PasswordHash) -> Result<(), String> {
    let p = argon2::Params::try_from(h).map_err(|e| {
        format!(
            "has invalid argon2 parameters ({e}); create a new hash with `authgate hash-password`"
        )
    })?;
    if p.m_cost() > MAX_M_KIB || p.t_cost() > MAX_T || p.p_cost() > MAX_P {
        return Err(format!(
            "has argon2 parameters m={}, t={}, p={} beyond what authgate verifies (m ≤ {MAX_M_KIB}, t ≤ {MAX_T}, p ≤ {MAX_P}); create a new hash with `authgate hash-password`",
            p.m_cost(), p.t_cost(), p.p_cost()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0bWcFSBKsPp2NRvHsLzh3s9cJ0NB4zX9rCsAyaRgx5w";

    #[test]
    fn lookup_is_case_insensitive_and_keeps_canonical_spelling() {
        let text = format!(
            "users:\n  - username: Demo\n    password_hash: \"{HASH}\"\n    roles: [user, admin]\n"
        );
        let u = Users::from_str(&text, Path::new("u.yaml")).unwrap();
        let user = u.get("dEMO").unwrap();
        assert_eq!(&*user.username, "Demo");
        assert_eq!(user.roles.header, "user,admin");
        assert!(user.roles.satisfies(&["admin".into()]));
        assert!(!user.roles.satisfies(&["root".into()]));
        assert!(u.get("de mo").is_none());
    }

    #[test]
    fn bad_entries_are_all_reported() {
        let text = format!(
            "users:\n  - username: 'bad name'\n    password_hash: x\n  - username: ok\n    password_hash: plain\n  - username: r\n    password_hash: \"{HASH}\"\n    roles: ['a b']\n  - username: OK2\n    password_hash: \"{HASH}\"\n  - username: ok2\n    password_hash: \"{HASH}\"\n    extra: 1\n"
        );
        let msg = Users::from_str(&text, Path::new("u.yaml"))
            .unwrap_err()
            .to_string();
        for key in [
            "users[0].username",
            "users[1].password_hash",
            "users[2].roles[0]",
            "users[4].extra",
            "users[4].username",
        ] {
            assert!(msg.contains(key), "{key} missing:\n{msg}");
        }
    }
}
