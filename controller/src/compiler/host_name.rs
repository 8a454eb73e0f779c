//! The host names of HTTP routes, as VirtualServices' `spec.hosts` and Ingress rules' `host` give them.

use berth_table::check_sni_pattern;

/// `raw` as the table matches it — lower case, without a trailing dot — or why it can never match a request: a
/// host is `*` (every host), a DNS name, or `*.` followed by one, with the same rules as a TLS server name.
pub fn host_name(raw: &str) -> Result<String, String> {
    let host = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if host == "*" {
        return Ok(host);
    }
    check_sni_pattern(&host).map(|()| host).map_err(|reason| format!("{raw:?} is not a host name: it {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wildcards_pass_lowered_and_anything_that_could_never_match_is_refused() {
        assert_eq!(host_name("Shop.Example.COM."), Ok("shop.example.com".to_string()));
        assert_eq!(host_name("*.example.com"), Ok("*.example.com".to_string()));
        assert_eq!(host_name("*"), Ok("*".to_string()));
        assert_eq!(host_name("reviews"), Ok("reviews".to_string()), "a short name is a name");
        for bad in ["bad host/with spaces", "shop.example.com:8080", "a..b", "*example.com", "a.*.com", ""] {
            let reason = host_name(bad).unwrap_err();
            assert!(reason.starts_with(&format!("{bad:?} is not a host name: it ")), "{reason}");
        }
    }
}
