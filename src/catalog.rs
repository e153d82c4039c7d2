//! The catalog: which services downradar watches, the problem categories people can report for
//! each, and the upstream services each one depends on.
//!
//! The catalog is TOML (the contract in DESIGN.md). It is parsed into [`ServiceId`] and
//! [`Problem`] newtypes, then checked as a whole: unique ids, at least one problem per service,
//! known dependencies and no dependency cycle. Every loading error names the file, the service
//! and the field, so a typo in a thousand-line catalog is found at once. Past this module the
//! catalog is trusted: nothing downstream re-checks an id or a problem.
//!
//! A default catalog of widely used services ships inside the binary (`catalog/default.toml`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The built-in catalog, used when no `--catalog` file is given.
const DEFAULT_CATALOG: &str = include_str!("catalog/default.toml");

/// Longest service id or problem name accepted.
const MAX_NAME_LEN: usize = 64;

/// Returns whether `s` matches `[a-z0-9-]{1,64}`, the shape of service ids and problem names.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why a string is not a valid service id or problem name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid name: expected 1 to 64 characters of a-z, 0-9 and '-'")]
pub struct SlugError(String);

macro_rules! slug_newtype {
    ($(#[$doc:meta])* $name:ident, $example:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses `s`, which must match `[a-z0-9-]{1,64}`.
            pub fn parse(s: &str) -> Result<Self, SlugError> {
                if is_slug(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(SlugError(s.to_owned()))
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Validates like `parse`, so a deserialized name is always well formed.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl FromStr for $name {
            type Err = SlugError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some("^[a-z0-9-]{1,64}$"))
                    .min_length(Some(1))
                    .max_length(Some(MAX_NAME_LEN))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

slug_newtype!(
    /// A service id such as `tiktok`: `[a-z0-9-]{1,64}`, unique in the catalog.
    ServiceId,
    "tiktok"
);
slug_newtype!(
    /// A problem category such as `login`: `[a-z0-9-]{1,64}`, one of its service's problems.
    Problem,
    "login"
);

/// One watched service.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Service {
    /// Stable id, used in URLs and Redis keys.
    pub id: ServiceId,
    /// Display name.
    #[schema(example = "TikTok")]
    pub name: String,
    /// Problem categories people can report, in catalog order.
    pub problems: Vec<Problem>,
    /// Upstream services this one depends on (their outages cascade into this one).
    pub depends_on: Vec<ServiceId>,
}

impl Service {
    /// Whether `problem` is one of this service's categories.
    pub fn has_problem(&self, problem: &str) -> bool {
        self.problems.iter().any(|p| p.as_str() == problem)
    }
}

/// A validated catalog: ids unique, dependencies known and acyclic.
#[derive(Debug, Clone)]
pub struct Catalog {
    services: Vec<Service>,
    index: HashMap<ServiceId, usize>,
}

/// A catalog that cannot be loaded, with the place of the fault.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    /// (The reason is in the message, and not also a `source`: printed with its causes,
    /// the error said it twice.)
    #[error("{file}: cannot read the catalog: {reason}")]
    Read {
        file: String,
        reason: std::io::Error,
    },
    /// The file is not valid TOML, or has the wrong shape.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// A field of one service is invalid.
    #[error("{file}: service {service:?}: {field}: {message}")]
    Invalid {
        file: String,
        service: String,
        field: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    id: String,
    name: String,
    problems: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
}

impl Catalog {
    /// The catalog that ships with downradar.
    pub fn builtin() -> Self {
        Self::parse("<built-in catalog>", DEFAULT_CATALOG)
            .expect("the built-in catalog is valid (checked by its unit test)")
    }

    /// The catalog at `path` (`--catalog`), or the built-in one when none is given.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<Self, CatalogError> {
        path.map_or_else(|| Ok(Self::builtin()), Self::load)
    }

    /// Loads and validates the catalog at `path`.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|reason| CatalogError::Read {
            file: file.clone(),
            reason,
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates catalog TOML; `file` names the source in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, CatalogError> {
        let raw: RawCatalog = toml::from_str(text).map_err(|e| {
            let message = e.to_string().trim_end().to_owned();
            CatalogError::Syntax {
                file: file.to_owned(),
                message: match e.span().and_then(|span| service_at(text, span.start)) {
                    Some(id) => format!("service {id:?}: {message}"),
                    None => message,
                },
            }
        })?;
        let invalid = |service: &str, field: &'static str, message: String| CatalogError::Invalid {
            file: file.to_owned(),
            service: service.to_owned(),
            field,
            message,
        };
        if raw.service.is_empty() {
            return Err(CatalogError::Syntax {
                file: file.to_owned(),
                message: "the catalog has no [[service]] entries".to_owned(),
            });
        }

        let mut services = Vec::with_capacity(raw.service.len());
        let mut index = HashMap::with_capacity(raw.service.len());
        for raw_service in &raw.service {
            let id = ServiceId::parse(&raw_service.id)
                .map_err(|e| invalid(&raw_service.id, "id", e.to_string()))?;
            if index.insert(id.clone(), services.len()).is_some() {
                return Err(invalid(
                    &raw_service.id,
                    "id",
                    "duplicate service id".into(),
                ));
            }
            if raw_service.name.trim().is_empty() {
                return Err(invalid(&raw_service.id, "name", "must not be empty".into()));
            }
            if raw_service.problems.is_empty() {
                return Err(invalid(
                    &raw_service.id,
                    "problems",
                    "a service needs at least one problem category".into(),
                ));
            }
            let mut problems = Vec::with_capacity(raw_service.problems.len());
            let mut seen = BTreeSet::new();
            for p in &raw_service.problems {
                let problem = Problem::parse(p)
                    .map_err(|e| invalid(&raw_service.id, "problems", e.to_string()))?;
                if !seen.insert(problem.clone()) {
                    return Err(invalid(
                        &raw_service.id,
                        "problems",
                        format!("duplicate problem {p:?}"),
                    ));
                }
                problems.push(problem);
            }
            let depends_on = raw_service
                .depends_on
                .iter()
                .map(|d| ServiceId::parse(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(&raw_service.id, "depends_on", e.to_string()))?;
            let mut seen = BTreeSet::new();
            if let Some(twice) = depends_on.iter().find(|d| !seen.insert(*d)) {
                return Err(invalid(
                    &raw_service.id,
                    "depends_on",
                    format!("duplicate dependency {:?}", twice.as_str()),
                ));
            }
            services.push(Service {
                id,
                name: raw_service.name.trim().to_owned(),
                problems,
                depends_on,
            });
        }

        for service in &services {
            for dep in &service.depends_on {
                if dep == &service.id {
                    return Err(invalid(
                        service.id.as_str(),
                        "depends_on",
                        "a service cannot depend on itself".into(),
                    ));
                }
                if !index.contains_key(dep) {
                    return Err(invalid(
                        service.id.as_str(),
                        "depends_on",
                        format!("unknown service {:?}", dep.as_str()),
                    ));
                }
            }
        }

        let catalog = Self { services, index };
        if let Some(cycle) = catalog.find_cycle() {
            let path: Vec<&str> = cycle.iter().map(ServiceId::as_str).collect();
            return Err(invalid(
                path[0],
                "depends_on",
                format!("dependency cycle: {}", path.join(" -> ")),
            ));
        }
        Ok(catalog)
    }

    /// All services, in catalog order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The service with this id, if the catalog has it.
    pub fn get(&self, id: &str) -> Option<&Service> {
        let id = ServiceId::parse(id).ok()?;
        self.index.get(&id).map(|&i| &self.services[i])
    }

    /// A dependency cycle as a closed path (`a -> b -> a`), if there is one.
    fn find_cycle(&self) -> Option<Vec<ServiceId>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.services.len()];
        // Iterative depth-first search: (service index, next dependency to visit).
        for start in 0..self.services.len() {
            if marks[start] != Mark::New {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::OnPath;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let deps = &self.services[node].depends_on;
                if *next == deps.len() {
                    marks[node] = Mark::Done;
                    stack.pop();
                    continue;
                }
                let dep = self.index[&deps[*next]];
                *next += 1;
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::OnPath;
                        stack.push((dep, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                        let mut cycle: Vec<ServiceId> = stack[from..]
                            .iter()
                            .map(|&(n, _)| self.services[n].id.clone())
                            .collect();
                        cycle.push(self.services[dep].id.clone());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            }
        }
        None
    }
}

/// The id of the `[[service]]` entry that byte `at` of the catalog `text` lies in, when the
/// entry gives one as a string: the service a TOML error there is about (a field of the
/// wrong type, a missing or unknown one, or a table of its own such as `[service.links]`).
fn service_at(text: &str, at: usize) -> Option<String> {
    const HEADER: &str = "[[service]]";
    let start = if text.get(at..)?.starts_with(HEADER) {
        at
    } else {
        text.get(..at)?.rfind(HEADER)?
    };
    let entry = &text[start + HEADER.len()..];
    // The entry goes on through the tables of its own (`[service.…]`), to the next header.
    let end = entry
        .match_indices("\n[")
        .map(|(i, _)| i)
        .find(|&i| !entry[i + 1..].starts_with("[service."))
        .unwrap_or(entry.len());
    // Past the entry, the error is about a table after it.
    if at > start + HEADER.len() + end {
        return None;
    }
    // The entry's own keys come before its tables.
    let keys = &entry[..entry.find("\n[").unwrap_or(end)];
    keys.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let value = value.trim_start();
        let quote = value.chars().next().filter(|c| matches!(c, '"' | '\''))?;
        let value = &value[1..];
        if key.trim() != "id" {
            return None;
        }
        Some(value[..value.find(quote)?].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn error_of(toml: &str) -> String {
        Catalog::parse("test.toml", toml).unwrap_err().to_string()
    }

    #[test]
    fn builtin_catalog_is_valid_and_broad() {
        let catalog = Catalog::builtin();
        assert!(
            catalog.services().len() >= 25,
            "{}",
            catalog.services().len()
        );
        for service in catalog.services() {
            assert!(
                service.problems.len() >= 3,
                "{} has too few problems",
                service.id
            );
        }
        let with_deps = catalog
            .services()
            .iter()
            .filter(|s| !s.depends_on.is_empty())
            .count();
        assert!(
            with_deps >= 5,
            "only {with_deps} services declare dependencies"
        );
    }

    #[test]
    fn lookup_by_id() {
        let catalog = Catalog::parse(
            "t.toml",
            r#"[[service]]
            id = "a"
            name = "A"
            problems = ["login"]"#,
        )
        .unwrap();
        assert_eq!(catalog.get("a").unwrap().name, "A");
        assert!(catalog.get("b").is_none());
        assert!(catalog.get("not a slug").is_none());
        assert!(catalog.get("a").unwrap().has_problem("login"));
        assert!(!catalog.get("a").unwrap().has_problem("app"));
    }

    #[test]
    fn unknown_dependency_names_file_service_and_field() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problems = ["app"]
            depends_on = ["nope"]"#,
        );
        assert_eq!(
            err,
            r#"test.toml: service "a": depends_on: unknown service "nope""#
        );
    }

    #[test]
    fn duplicate_id_is_rejected() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problems = ["app"]
            [[service]]
            id = "a"
            name = "Again"
            problems = ["app"]"#,
        );
        assert_eq!(err, r#"test.toml: service "a": id: duplicate service id"#);
    }

    #[test]
    fn bad_id_is_rejected() {
        let err = error_of(
            r#"[[service]]
            id = "Bad Id"
            name = "A"
            problems = ["app"]"#,
        );
        assert!(
            err.starts_with(r#"test.toml: service "Bad Id": id: "Bad Id" is not a valid name"#),
            "{err}"
        );
    }

    #[test]
    fn service_without_problems_is_rejected() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problems = []"#,
        );
        assert_eq!(
            err,
            r#"test.toml: service "a": problems: a service needs at least one problem category"#
        );
    }

    #[test]
    fn dependency_cycle_is_rejected_with_its_path() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problems = ["app"]
            depends_on = ["b"]
            [[service]]
            id = "b"
            name = "B"
            problems = ["app"]
            depends_on = ["c"]
            [[service]]
            id = "c"
            name = "C"
            problems = ["app"]
            depends_on = ["a"]"#,
        );
        assert_eq!(
            err,
            r#"test.toml: service "a": depends_on: dependency cycle: a -> b -> c -> a"#
        );
    }

    #[test]
    fn self_dependency_is_rejected() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problems = ["app"]
            depends_on = ["a"]"#,
        );
        assert_eq!(
            err,
            r#"test.toml: service "a": depends_on: a service cannot depend on itself"#
        );
    }

    #[test]
    fn duplicate_dependency_is_rejected() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problems = ["app"]
            depends_on = ["b", "b"]

            [[service]]
            id = "b"
            name = "B"
            problems = ["app"]"#,
        );
        assert_eq!(
            err,
            r#"test.toml: service "a": depends_on: duplicate dependency "b""#
        );
    }

    #[test]
    fn unknown_fields_and_syntax_errors_name_the_file() {
        let err = error_of(
            r#"[[service]]
            id = "a"
            name = "A"
            problem = ["app"]"#,
        );
        assert!(err.starts_with("test.toml: "), "{err}");
        assert!(err.contains("problem"), "{err}");
        assert!(error_of("[[service]\n").starts_with("test.toml: "));
    }

    #[test]
    fn type_errors_name_the_service() {
        let two = |second: &str| {
            error_of(&format!(
                "[[service]]\nid = \"a\"\nname = \"A\"\nproblems = [\"app\"]\n\n\
                 [[service]]\n{second}"
            ))
        };
        let err = two("id = \"b\"  # the second\nname = \"B\"\nproblems = [\"app\", 3]\n");
        assert!(
            err.starts_with("test.toml: service \"b\": TOML parse error at line 9")
                && err.contains("invalid type: integer `3`, expected a string"),
            "{err}"
        );
        let err = two("name = 'B'\nid = 'b'\nproblems = [\"app\"]\ndepends_on = \"a\"\n");
        assert!(err.starts_with("test.toml: service \"b\": "), "{err}");
        let err = two("id = \"b\"\nproblems = [\"app\"]\n");
        assert!(
            err.starts_with("test.toml: service \"b\": ") && err.contains("missing field `name`"),
            "{err}"
        );
        // A table of the entry's own is the entry's.
        let err = two("id = \"b\"\nname = \"B\"\nproblems = [\"app\"]\n[service.links]\nx = 1\n");
        assert!(
            err.starts_with("test.toml: service \"b\": ") && err.contains("unknown field `links`"),
            "{err}"
        );
        // An id that is no string names no service; nor does a table after the services.
        let err = two("id = 7\nname = \"B\"\nproblems = [\"app\"]\n");
        assert!(err.starts_with("test.toml: TOML parse error"), "{err}");
        for after in ["[other]\nx = 1\n", "[[servce]]\nid = \"c\"\n"] {
            let err = two(&format!(
                "id = \"b\"\nname = \"B\"\nproblems = [\"app\"]\n{after}"
            ));
            assert!(err.starts_with("test.toml: TOML parse error"), "{err}");
        }
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = Catalog::load(Path::new("/nonexistent/catalog.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/catalog.toml: cannot read"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn slug_parse_accepts_exactly_the_slug_shape(s in "\\PC{0,70}") {
            let expected = !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            prop_assert_eq!(ServiceId::parse(&s).is_ok(), expected);
            prop_assert_eq!(Problem::parse(&s).is_ok(), expected);
        }

        #[test]
        fn valid_slugs_round_trip(s in "[a-z0-9-]{1,64}") {
            let id = ServiceId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }
}
