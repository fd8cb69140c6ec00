//! [`PolicySet`]: the `.rhai` files of a directory compiled into one immutable AST.
//!
//! Each file is compiled on its own first, so a syntax error names its file, line and
//! column; then the files are merged (a function defined in two files is an error). Which
//! hooks exist is decided once here, so a missing hook costs nothing per request.

use super::budget::{action_from_dynamic, BudgetAction};
use super::cache::{cache_from_dynamic, CacheDecision};
use super::decision::{decision_from_dynamic, Decision, PolicyRequest};
use super::engine::PolicyEngine;
use super::limits::{limits_from_dynamic, LimitSpec};
use super::PolicyError;
use chrono::{DateTime, Utc};
use rhai::{Dynamic, EvalAltResult, AST};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// One file of a compiled set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFile {
    /// File name inside the policy directory.
    pub name: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// A policy file read from disk, not yet compiled.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub name: String,
    pub text: String,
    pub sha256: String,
}

impl SourceFile {
    pub(crate) fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        SourceFile {
            name: name.into(),
            text,
            sha256,
        }
    }
}

/// Whether a file name is a policy file: `*.rhai`, not hidden, not an editor lock file.
pub(crate) fn is_policy_file_name(name: &str) -> bool {
    name.ends_with(".rhai") && name.len() > ".rhai".len() && !name.starts_with(['.', '#'])
}

/// Read the `.rhai` files of `dir` (not recursive, sorted by name; symlinks followed).
pub(crate) fn read_sources(dir: &Path) -> Result<Vec<SourceFile>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::io(dir, e))?;
    let mut sources = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PolicyError::io(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_policy_file_name(&name) {
            continue;
        }
        let path = entry.path();
        // A `.rhai` entry that is not a readable file (a dangling symlink, a directory) is an
        // error naming it, never silently skipped: skipping it would drop its hooks.
        let problem = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => None,
            Ok(meta) if meta.is_dir() => Some("is a directory, not a policy file".to_string()),
            Ok(_) => Some("is not a regular file".to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Some("is a dangling symlink (its target does not exist)".to_string())
            }
            Err(err) => Some(format!("cannot be read: {err}")),
        };
        if let Some(problem) = problem {
            return Err(PolicyError::io(&path, std::io::Error::other(problem)));
        }
        let bytes = std::fs::read(&path).map_err(|e| PolicyError::io(&path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::Compile {
            file: name.clone(),
            line: 0,
            column: 0,
            message: "file is not valid utf-8".into(),
        })?;
        sources.push(SourceFile::new(name, text));
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(sources)
}

/// The hooks a set defines, decided once per compile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hooks {
    route: bool,
    redact: bool,
    limits: bool,
    budget: bool,
    cache: bool,
}

/// Hook names and their parameter counts.
const HOOKS: &[(&str, usize, &str)] = &[
    ("route", 1, "req"),
    ("redact", 1, "text"),
    ("limits", 1, "req"),
    ("budget", 2, "req, spend"),
    ("cache", 1, "req"),
];

/// A hook that did not return normally: a deliberate refusal or a run-time failure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HookFailure {
    Refused {
        status: u16,
        message: String,
    },
    Runtime {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl HookFailure {
    /// The error a request sees.
    pub(crate) fn into_request_error(self) -> PolicyError {
        match self {
            HookFailure::Refused { status, message } => PolicyError::Refused { status, message },
            HookFailure::Runtime {
                file,
                line,
                column,
                message,
            } => PolicyError::Script {
                message: format!("{}: {message}", super::location(&file, line, column)),
            },
        }
    }
}

/// A compiled, immutable policy. Cheap to share (`Arc<PolicySet>`); every hook call uses a
/// fresh `Scope`, so concurrent requests never wait on each other.
pub struct PolicySet {
    engine: PolicyEngine,
    ast: AST,
    version: u64,
    files: Vec<PolicyFile>,
    loaded_at: DateTime<Utc>,
    hooks: Hooks,
    /// Function name → the file defining it, to place run-time errors.
    fn_files: HashMap<String, String>,
    /// File name → its text, to place a hook's shape errors on a line.
    texts: HashMap<String, std::sync::Arc<str>>,
}

impl PolicySet {
    /// A set with no files and no hooks: every request keeps its own model.
    pub fn empty(engine: &PolicyEngine, version: u64) -> PolicySet {
        PolicySet {
            engine: engine.clone(),
            ast: AST::empty(),
            version,
            files: Vec::new(),
            loaded_at: Utc::now(),
            hooks: Hooks::default(),
            fn_files: HashMap::new(),
            texts: HashMap::new(),
        }
    }

    /// Compile the `.rhai` files of `dir` (no self-check; see [`PolicySet::self_check`]).
    pub fn compile_dir(
        engine: &PolicyEngine,
        dir: &Path,
        version: u64,
    ) -> Result<PolicySet, PolicyError> {
        PolicySet::compile(engine, read_sources(dir)?, version)
    }

    /// Compile in-memory files `(name, text)`, in the given order.
    pub fn compile_sources(
        engine: &PolicyEngine,
        sources: &[(String, String)],
        version: u64,
    ) -> Result<PolicySet, PolicyError> {
        let sources = sources
            .iter()
            .map(|(name, text)| SourceFile::new(name.clone(), text.clone()))
            .collect();
        PolicySet::compile(engine, sources, version)
    }

    pub(crate) fn compile(
        engine: &PolicyEngine,
        sources: Vec<SourceFile>,
        version: u64,
    ) -> Result<PolicySet, PolicyError> {
        let mut merged = AST::empty();
        let mut fn_files = HashMap::new();
        let mut defined: HashMap<(String, usize), String> = HashMap::new();
        let mut files = Vec::with_capacity(sources.len());
        let mut texts = HashMap::new();
        for source in sources {
            let mut ast =
                engine
                    .rhai()
                    .compile(&source.text)
                    .map_err(|err| PolicyError::Compile {
                        file: source.name.clone(),
                        line: err.1.line().unwrap_or(0),
                        column: err.1.position().unwrap_or(0),
                        message: err.0.to_string(),
                    })?;
            if let Some((name, ..)) = ast.iter_literal_variables(true, true).next() {
                return Err(PolicyError::SelfCheck {
                    file: source.name.clone(),
                    line: 0,
                    column: 0,
                    message: format!(
                        "top-level `{name}` is never evaluated: hooks run without the file's \
                         top-level statements; define it inside a function instead"
                    ),
                });
            }
            for f in ast.iter_functions() {
                let key = (f.name.to_string(), f.params.len());
                if let Some(other) = defined.insert(key, source.name.clone()) {
                    return Err(PolicyError::SelfCheck {
                        file: source.name.clone(),
                        line: 0,
                        column: 0,
                        message: format!(
                            "function `{}` with {} parameter(s) is also defined in {other}",
                            f.name,
                            f.params.len()
                        ),
                    });
                }
                fn_files.insert(f.name.to_string(), source.name.clone());
            }
            ast.set_source(source.name.as_str());
            texts.insert(
                source.name.clone(),
                std::sync::Arc::from(source.text.as_str()),
            );
            merged.combine(ast);
            files.push(PolicyFile {
                name: source.name,
                sha256: source.sha256,
            });
        }
        merged.clear_statements();
        let mut hooks = Hooks::default();
        for (hook, arity, params) in HOOKS {
            let present = defined.contains_key(&(hook.to_string(), *arity));
            if !present {
                if let Some(((_, n), file)) = defined.iter().find(|((name, _), _)| name == hook) {
                    return Err(PolicyError::SelfCheck {
                        file: file.clone(),
                        line: 0,
                        column: 0,
                        message: format!(
                            "hook `{hook}` takes {arity} parameter(s) ({params}), not {n}"
                        ),
                    });
                }
            }
            match *hook {
                "route" => hooks.route = present,
                "redact" => hooks.redact = present,
                "limits" => hooks.limits = present,
                "budget" => hooks.budget = present,
                _ => hooks.cache = present,
            }
        }
        Ok(PolicySet {
            engine: engine.clone(),
            ast: merged,
            version,
            files,
            loaded_at: Utc::now(),
            hooks,
            fn_files,
            texts,
        })
    }

    /// The version: 0 for the empty start-up set, +1 per successful (re)load.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The files of this set with their SHA-256.
    pub fn files(&self) -> &[PolicyFile] {
        &self.files
    }

    /// When this set was compiled.
    pub fn loaded_at(&self) -> DateTime<Utc> {
        self.loaded_at
    }

    /// Whether a `route(req)` hook is defined.
    pub fn has_route(&self) -> bool {
        self.hooks.route
    }

    /// Whether a `redact(text)` hook is defined.
    pub fn has_redact(&self) -> bool {
        self.hooks.redact
    }

    /// Whether a `limits(req)` hook is defined.
    pub fn has_limits(&self) -> bool {
        self.hooks.limits
    }

    /// Whether a `budget(req, spend)` hook is defined.
    pub fn has_budget(&self) -> bool {
        self.hooks.budget
    }

    /// Whether a `cache(req)` hook is defined.
    pub fn has_cache(&self) -> bool {
        self.hooks.cache
    }

    /// Names of the hooks defined, for status pages.
    pub fn hook_names(&self) -> Vec<&'static str> {
        [
            ("route", self.hooks.route),
            ("redact", self.hooks.redact),
            ("limits", self.hooks.limits),
            ("budget", self.hooks.budget),
            ("cache", self.hooks.cache),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect()
    }

    /// Run `route(req)`. `Ok(None)` when there is no `route` hook (no work is done) or it
    /// returned `()`: the request keeps its own model.
    pub fn route(&self, req: &PolicyRequest) -> Result<Option<Decision>, PolicyError> {
        if !self.hooks.route {
            return Ok(None);
        }
        self.route_hook(req)
            .map_err(HookFailure::into_request_error)
    }

    pub(crate) fn route_hook(&self, req: &PolicyRequest) -> Result<Option<Decision>, HookFailure> {
        let value = self.call_hook("route", (req.to_dynamic(),))?;
        decision_from_dynamic(value, self.version)
            .map_err(|message| self.shape_failure("route", message))
    }

    /// Run `redact(text)`: `Ok(None)` without a hook or when it returned `()`, else the
    /// masked text.
    pub fn redact(&self, text: &str) -> Result<Option<String>, PolicyError> {
        if !self.hooks.redact {
            return Ok(None);
        }
        self.redact_hook(text)
            .map_err(HookFailure::into_request_error)
    }

    pub(crate) fn redact_hook(&self, text: &str) -> Result<Option<String>, HookFailure> {
        let value = self.call_hook("redact", (Dynamic::from(text.to_string()),))?;
        if value.is_unit() {
            return Ok(None);
        }
        let type_name = value.type_name();
        value.into_string().map(Some).map_err(|_| {
            self.shape_failure(
                "redact",
                format!("redact must return a string or (), not {type_name}"),
            )
        })
    }

    /// Run `limits(req)`: the buckets this request counts against (none without a hook).
    pub fn limits(&self, req: &PolicyRequest) -> Result<Vec<LimitSpec>, PolicyError> {
        if !self.hooks.limits {
            return Ok(Vec::new());
        }
        self.limits_hook(req)
            .map_err(HookFailure::into_request_error)
    }

    /// Run `limits(req)` and check its shape; a bad one names the file and the line of the
    /// offending key (else of the hook).
    pub(crate) fn limits_hook(&self, req: &PolicyRequest) -> Result<Vec<LimitSpec>, HookFailure> {
        let value = self.call_hook("limits", (req.to_dynamic(),))?;
        limits_from_dynamic(value).map_err(|(message, key)| self.placed("limits", message, key))
    }

    /// Run `budget(req, spend)`: the action for this request (allow without a hook).
    pub fn budget(&self, req: &PolicyRequest, spend: Dynamic) -> Result<BudgetAction, PolicyError> {
        if !self.hooks.budget {
            return Ok(BudgetAction::Allow);
        }
        self.budget_hook(req, spend)
            .map_err(HookFailure::into_request_error)
    }

    /// Run `budget(req, spend)` and check its shape, placed like `limits`.
    pub(crate) fn budget_hook(
        &self,
        req: &PolicyRequest,
        spend: Dynamic,
    ) -> Result<BudgetAction, HookFailure> {
        let value = self.call_hook("budget", (req.to_dynamic(), spend))?;
        action_from_dynamic(value).map_err(|(message, key)| self.placed("budget", message, key))
    }

    /// Run `cache(req)`: whether and how this request uses the response cache
    /// ([`CacheDecision::Default`] without a hook).
    pub fn cache(&self, req: &PolicyRequest) -> Result<CacheDecision, PolicyError> {
        if !self.hooks.cache {
            return Ok(CacheDecision::Default);
        }
        self.cache_hook(req)
            .map_err(HookFailure::into_request_error)
    }

    /// Run `cache(req)` and check its shape, placed like `limits`.
    pub(crate) fn cache_hook(&self, req: &PolicyRequest) -> Result<CacheDecision, HookFailure> {
        let value = self.call_hook("cache", (req.to_dynamic(),))?;
        cache_from_dynamic(value).map_err(|(message, key)| self.placed("cache", message, key))
    }

    /// A shape failure of `hook`, at the line of `key` (else of the hook).
    fn placed(&self, hook: &str, message: String, key: Option<String>) -> HookFailure {
        let file = self.file_of(hook, None);
        let (line, column) = self.line_of(hook, &file, key.as_deref());
        HookFailure::Runtime {
            file,
            line,
            column,
            message,
        }
    }

    /// The line (1-based) and column of `key:` inside `function` in `file`, else of the
    /// function's definition; `(0, 0)` when neither is found.
    fn line_of(&self, function: &str, file: &str, key: Option<&str>) -> (usize, usize) {
        let Some(text) = self.texts.get(file) else {
            return (0, 0);
        };
        let definition = format!("fn {function}(");
        let mut lines = text.lines().enumerate();
        let Some((start, line)) = lines.find(|(_, line)| line.contains(&definition)) else {
            return (0, 0);
        };
        let at_definition = (start + 1, line.find("fn ").map_or(1, |c| c + 1));
        let Some(key) = key else {
            return at_definition;
        };
        let found = std::iter::once((start, line))
            .chain(lines.take_while(|(_, line)| !line.trim_start().starts_with("fn ")))
            .find_map(|(n, line)| {
                line.match_indices(key).find_map(|(column, _)| {
                    let after = line[column + key.len()..].trim_start();
                    after.starts_with(':').then_some((n + 1, column + 1))
                })
            });
        found.unwrap_or(at_definition)
    }

    fn call_hook(&self, hook: &str, args: impl rhai::FuncArgs) -> Result<Dynamic, HookFailure> {
        self.engine
            .call(&self.ast, hook, args)
            .map_err(|err| self.failure(hook, *err))
    }

    fn shape_failure(&self, hook: &str, message: String) -> HookFailure {
        HookFailure::Runtime {
            file: self.file_of(hook, None),
            line: 0,
            column: 0,
            message,
        }
    }

    /// The file defining `function` (`"policy"` when unknown).
    pub(crate) fn hook_file(&self, function: &str) -> String {
        self.file_of(function, None)
    }

    fn file_of(&self, function: &str, source: Option<String>) -> String {
        self.fn_files
            .get(function)
            .cloned()
            .or(source)
            .unwrap_or_else(|| "policy".to_string())
    }

    /// Turn a Rhai error into a refusal (`throw`) or a placed run-time failure.
    fn failure(&self, hook: &str, err: EvalAltResult) -> HookFailure {
        let mut function = hook.to_string();
        let mut source = None;
        let mut current = err;
        loop {
            match current {
                EvalAltResult::ErrorInFunctionCall(name, src, inner, _) => {
                    function = name;
                    if !src.is_empty() {
                        source = Some(src);
                    }
                    current = *inner;
                }
                other => {
                    current = other;
                    break;
                }
            }
        }
        if let EvalAltResult::ErrorRuntime(value, _) = current {
            return refusal(value);
        }
        let position = current.take_position();
        let message = match current {
            EvalAltResult::ErrorTooManyOperations(_) => format!(
                "operation limit exceeded ({} operations)",
                self.engine.rhai().max_operations()
            ),
            other => other.to_string(),
        };
        HookFailure::Runtime {
            file: self.file_of(&function, source),
            line: position.line().unwrap_or(0),
            column: position.position().unwrap_or(0),
            message: format!("in `{function}`: {message}"),
        }
    }
}

/// What a `throw` means for the client: `#{status, message}` (status kept when in
/// 400..=599, else 403), a string (403 with it as the message), anything else (403).
fn refusal(value: Dynamic) -> HookFailure {
    const DEFAULT: &str = "request refused by policy";
    if let Some(map) = value.clone().try_cast::<rhai::Map>() {
        let status = map
            .get("status")
            .and_then(|s| s.as_int().ok())
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (400..=599).contains(s))
            .unwrap_or(403);
        let message = map
            .get("message")
            .filter(|m| !m.is_unit())
            .map(|m| m.to_string())
            .unwrap_or_else(|| DEFAULT.to_string());
        return HookFailure::Refused { status, message };
    }
    let message = if value.is_unit() {
        DEFAULT.to_string()
    } else {
        value.to_string()
    };
    HookFailure::Refused {
        status: 403,
        message,
    }
}

#[cfg(test)]
#[path = "set_tests.rs"]
mod tests;
