//! Resource paths: `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced or not, item, subresource.

/// What a resource request addresses, before the resource type is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    /// Empty for the group-version's discovery document.
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// What a path under `/api` or `/apis` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `/apis/<group>`: the group's versions.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resource list, or a resource request.
    Resource(Target),
}

/// Parses a path; `namespaced(group, version, plural)` tells `namespaces/<ns>/<plural>` from a namespace's
/// subresource (`namespaces/<name>/status`).
pub fn parse(path: &str, namespaced: impl Fn(&str, &str, &str) -> bool) -> Option<Path> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group] => return Some(Path::Group(group.to_string())),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let target = |namespace: Option<&str>, plural: &str, name: Option<&&str>, sub: Option<&&str>| Target {
        group: group.into(),
        version: version.into(),
        namespace: namespace.map(String::from),
        plural: plural.into(),
        name: name.map(|s| s.to_string()),
        sub: sub.map(|s| s.to_string()),
    };
    let t = match rest {
        [] => target(None, "", None, None),
        ["namespaces", ns, plural, tail @ ..] if namespaced(group, version, plural) && tail.len() <= 2 => {
            target(Some(ns), plural, tail.first(), tail.get(1))
        }
        [plural, tail @ ..] if tail.len() <= 2 => target(None, plural, tail.first(), tail.get(1)),
        _ => return None,
    };
    if [Some(&t.plural), t.name.as_ref(), t.sub.as_ref()].into_iter().flatten().any(|s| s.is_empty())
        && !rest.is_empty()
    {
        return None;
    }
    Some(Path::Resource(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Option<Path> {
        parse(path, |_, _, plural| plural == "services" || plural == "leases")
    }

    fn t(group: &str, ns: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>) -> Option<Path> {
        Some(Path::Resource(Target {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(String::from),
            plural: plural.into(),
            name: name.map(String::from),
            sub: sub.map(String::from),
        }))
    }

    #[test]
    fn parses_resource_paths() {
        assert_eq!(p("/api/v1"), t("", None, "", None, None));
        assert_eq!(p("/api/v1/services"), t("", None, "services", None, None));
        assert_eq!(p("/api/v1/namespaces"), t("", None, "namespaces", None, None));
        assert_eq!(p("/api/v1/namespaces/shop"), t("", None, "namespaces", Some("shop"), None));
        assert_eq!(p("/api/v1/namespaces/shop/status"), t("", None, "namespaces", Some("shop"), Some("status")));
        assert_eq!(p("/api/v1/namespaces/shop/services"), t("", Some("shop"), "services", None, None));
        assert_eq!(
            p("/api/v1/namespaces/shop/services/web/status"),
            t("", Some("shop"), "services", Some("web"), Some("status"))
        );
        assert_eq!(
            p("/apis/coordination.k8s.io/v1/namespaces/x/leases/l"),
            t("coordination.k8s.io", Some("x"), "leases", Some("l"), None)
        );
        assert_eq!(p("/apis/berth.dev"), Some(Path::Group("berth.dev".into())));
        assert_eq!(p("/api/v1/namespaces/shop/services/web/status/x"), None);
        assert_eq!(p("/version"), None);
    }
}
