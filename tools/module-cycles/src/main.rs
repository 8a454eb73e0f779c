//! `berth-module-cycles SRC_DIR [--forbid A->B]... [--allow A->B]...`: fails when the top-level modules of the crate at `SRC_DIR` (its
//! `lib.rs`) import each other in a cycle, and names the cycle with one `file:line` per import that makes it. Each
//! `--forbid A->B` also fails when module `A` imports module `B` at all: a layering rule (sources and the compiler
//! import nothing from the server). `--allow A->B` leaves an import out of both checks, for a known cycle
//! while it is being taken apart.
//!
//! A module is a file or directory directly under `SRC_DIR`; it depends on another when its code names
//! `crate::other` (in a `use` or inline). Names the crate root re-exports (`pub use error::{Error, Result}`) count
//! as their module. Tests are left out (files named `tests.rs`, directories named `tests`, and a file from its
//! `#[cfg(test)]` on, which is where tests sit by convention): a test may use anything. `super::` is not read: it
//! stays within a module except in the crate root's direct files, which use `crate::` by convention.
//!
//! Text, not a parser: it reads code with comments and string literals blanked out, which is what a `use` line
//! needs, and keeps the tool free of dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let usage =
        "usage: berth-module-cycles SRC_DIR [--forbid A->B]... [--allow A->B]... (SRC_DIR holds the crate's lib.rs)";
    let mut args = std::env::args().skip(1);
    let Some(src) = args.next() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let (mut forbidden, mut allowed) = (Vec::new(), Vec::new());
    while let Some(arg) = args.next() {
        let rule = args.next();
        let Some((from, to)) = rule.as_deref().and_then(|r| r.split_once("->")) else {
            eprintln!("{usage}");
            return ExitCode::from(2);
        };
        let edge = (from.trim().to_string(), to.trim().to_string());
        match arg.as_str() {
            "--forbid" => forbidden.push(edge),
            "--allow" => allowed.push(edge),
            _ => {
                eprintln!("{usage}");
                return ExitCode::from(2);
            }
        }
    }
    match check(Path::new(&src), &forbidden, &allowed) {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            eprintln!("module imports in {src} go both ways: an output type owns an import; move the shared type down");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("berth-module-cycles: {error}");
            ExitCode::from(2)
        }
    }
}

/// Where one module imports another: the first place found.
type Edges = BTreeMap<(String, String), String>;

/// Every cycle among the top-level modules under `src`, and every import `forbidden` names, described.
fn check(src: &Path, forbidden: &[(String, String)], allowed: &[(String, String)]) -> Result<Vec<String>, String> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let root = code_of(&read(&src.join("lib.rs"))?);
    let reexports = reexports(&root);
    let mut edges = Edges::new();
    let mut modules = BTreeSet::new();
    for (module, file) in files(src)? {
        modules.insert(module.clone());
        let code = code_of(&read(&file)?);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        for (line, target) in imports(code) {
            let target = reexports.get(&target).cloned().unwrap_or(target);
            if target != module {
                let at = format!("{}:{line}", file.display());
                edges.entry((module.clone(), target)).or_insert(at);
            }
        }
    }
    edges.retain(|edge, _| modules.contains(&edge.1) && !allowed.contains(edge));
    let mut problems = cycles(&modules, &edges);
    for rule in forbidden {
        if let Some(at) = edges.get(rule) {
            problems.push(format!("{} must not import {} ({at})", rule.0, rule.1));
        }
    }
    Ok(problems)
}

/// Each `.rs` file under `src` but the crate root, with its top-level module; tests are left out.
fn files(src: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut found = Vec::new();
    let mut pending = vec![(None::<String>, src.to_path_buf())];
    while let Some((module, dir)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            if name == "tests" {
                continue;
            }
            let owner = module.clone().unwrap_or_else(|| name.clone());
            if path.is_dir() {
                pending.push((Some(owner), path));
            } else if path.extension().is_some_and(|e| e == "rs")
                && !(module.is_none() && ["lib", "main"].contains(&name.as_str()))
            {
                found.push((owner, path));
            }
        }
    }
    Ok(found)
}

/// `code` with comments and the contents of string and char literals replaced by spaces; lines stay where they are.
fn code_of(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char(chars.get(i.wrapping_sub(1))) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.extend(std::iter::repeat_n(' ', j + 1 - i));
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&d) = chars.get(i) {
                    out.push(blank(d));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && char_literal_end(&chars, i).is_some() {
            let end = char_literal_end(&chars, i).unwrap_or(i);
            out.extend(std::iter::repeat_n(' ', end + 1 - i));
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Where the char literal opening at `i` ends, if it is one (`'a'`, `'\n'`), not a lifetime (`'a`).
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\''),
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 2),
        _ => None,
    }
}

/// The names the crate root re-exports from its modules (`pub use error::{Error, Result}`), with their module.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in root.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else { continue };
        let rest = rest.trim().trim_start_matches("crate::").trim_start_matches("self::");
        let Some((module, items)) = rest.split_once("::") else { continue };
        for item in items.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace()).split(',') {
            let name = item.split_whitespace().last().unwrap_or_default();
            if !name.is_empty() {
                names.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    names
}

/// Every top-level module `code` names through `crate::`, with the line it does so on.
fn imports(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    for (at, _) in code.match_indices("crate::") {
        if ident_char(code[..at].chars().last().as_ref()) {
            continue; // `berth_crate::`, not `crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each item at the group's top level.
            let mut depth = 0;
            let mut item_start = true;
            let offset = at + "crate::{".len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let name: String =
                            group[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        found.push((line_of(offset + i), name));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push((line_of(at), name));
            }
        }
    }
    found
}

/// Each strongly connected group of more than one module, with the imports that close it.
fn cycles(modules: &BTreeSet<String>, edges: &Edges) -> Vec<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::from([from.to_string()]);
        let mut pending = vec![from.to_string()];
        while let Some(m) = pending.pop() {
            for (a, b) in edges.keys() {
                if *a == m && seen.insert(b.clone()) {
                    pending.push(b.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = modules.iter().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for module in modules {
        if done.contains(module) {
            continue;
        }
        let group: BTreeSet<String> =
            reachable[module].iter().filter(|other| reachable[*other].contains(module)).cloned().collect();
        done.extend(group.iter().cloned());
        if group.len() < 2 {
            continue;
        }
        let mut text = format!("cycle among {}:", group.iter().cloned().collect::<Vec<_>>().join(", "));
        for ((a, b), at) in edges {
            if group.contains(a) && group.contains(b) {
                text.push_str(&format!("\n  {a} -> {b} ({at})"));
            }
        }
        found.push(text);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grouped_and_inline_paths_but_not_comments_or_strings() {
        let code = code_of(
            "use crate::{Error, compiler::{a, b}, index};\n// crate::report\nlet s = \"crate::server\";\nx(crate::publish::f);\n",
        );
        let names: Vec<(usize, String)> = imports(&code);
        let expected = [(1, "Error"), (1, "compiler"), (1, "index"), (4, "publish")];
        assert_eq!(names, expected.map(|(l, n)| (l, n.to_string())));
    }

    #[test]
    fn finds_a_cycle_and_names_its_imports() {
        let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        let edge = |a: &str, b: &str| ((a.to_string(), b.to_string()), format!("{a}.rs:1"));
        let mut edges: Edges = [edge("a", "b"), edge("b", "c"), edge("d", "a")].into();
        assert!(cycles(&modules, &edges).is_empty());
        edges.extend([edge("c", "a")]);
        let found = cycles(&modules, &edges);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("cycle among a, b, c:"), "{}", found[0]);
        assert!(found[0].contains("c -> a (c.rs:1)") && !found[0].contains("d ->"), "{}", found[0]);
    }

    #[test]
    fn root_reexports_count_as_their_module() {
        let names = reexports("pub mod error;\npub use diagnostic::Diagnostic;\npub use error::{Error, Result};\n");
        assert_eq!(names.get("Result").map(String::as_str), Some("error"));
        assert_eq!(names.get("Diagnostic").map(String::as_str), Some("diagnostic"));
    }
}
