//! Query parameters of resource requests.

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let map = raw
            .and_then(|q| {
                axum::extract::Query::<HashMap<String, String>>::try_from_uri(&format!("/?{q}").parse().ok()?).ok()
            })
            .map(|q| q.0)
            .unwrap_or_default();
        Query(map)
    }

    /// A parameter that is present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Go's `strconv.ParseBool` truths, as the real server parses `watch=1`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }

    pub fn field_manager(&self) -> Option<&str> {
        self.get("fieldManager")
    }
}
