//! The Rhai sandbox policies run in, and the host helpers registered on it.
//!
//! One [`PolicyEngine`] per [`PolicyStore`](super::PolicyStore), shared by every compiled
//! [`PolicySet`](super::PolicySet) and every request (Rhai's `sync` feature makes it
//! `Send + Sync`). Each hook call gets a fresh `Scope`; nothing is locked.
//!
//! The sandbox: an operation limit per hook call, 32 call levels, expression depth 64,
//! strings up to 1 MiB, arrays and maps up to 10,000 items, no `eval`, no `import` (the module
//! resolver refuses everything), strict variables (an undefined name is a compile error),
//! `print`/`debug` go to `tracing`. Core Rhai has no file, network or clock-sleep access.

use super::host::{HostInfo, ModelInfo};
use rhai::module_resolvers::DummyModuleResolver;
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Map, Scope, AST, FLOAT, INT};
use std::sync::Arc;

/// The default operation limit when none (or 0, which Rhai reads as "unlimited") is given.
pub const DEFAULT_MAX_OPERATIONS: u64 = 200_000;

/// A sandboxed Rhai engine with the host helpers `model_info`, `provider_healthy`,
/// `latency_ms` and `log` registered. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Arc<Engine>,
}

impl PolicyEngine {
    /// A sandboxed engine whose helpers answer from `host`; `max_operations` bounds each hook
    /// call (0 means [`DEFAULT_MAX_OPERATIONS`]).
    pub fn new(host: Arc<dyn HostInfo>, max_operations: u64) -> PolicyEngine {
        let mut engine = Engine::new();
        let max_operations = if max_operations == 0 {
            DEFAULT_MAX_OPERATIONS
        } else {
            max_operations
        };
        engine
            .set_max_operations(max_operations)
            .set_max_call_levels(32)
            .set_max_expr_depths(64, 64)
            .set_max_string_size(1024 * 1024)
            .set_max_array_size(10_000)
            .set_max_map_size(10_000)
            .set_max_variables(1_000)
            .set_max_functions(1_000)
            .set_module_resolver(DummyModuleResolver::new())
            .set_strict_variables(true)
            .disable_symbol("eval");
        engine.on_print(|text| {
            tracing::info!(target: "switchyard::policy::script", text, "policy print");
        });
        engine.on_debug(|text, source, pos| {
            tracing::debug!(
                target: "switchyard::policy::script",
                text,
                file = source.unwrap_or(""),
                line = pos.line().unwrap_or(0),
                "policy debug"
            );
        });
        register_helpers(&mut engine, host);
        PolicyEngine {
            engine: Arc::new(engine),
        }
    }

    /// The Rhai engine (compile with it; call hooks through [`PolicyEngine::call`]).
    pub fn rhai(&self) -> &Engine {
        &self.engine
    }

    /// Call the script function `name` of `ast` with a fresh scope, without re-running the
    /// file's top-level statements.
    pub(crate) fn call(
        &self,
        ast: &AST,
        name: &str,
        args: impl rhai::FuncArgs,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
        self.engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, ast, name, args)
    }
}

fn model_info_map(info: ModelInfo) -> Dynamic {
    let mut map = Map::new();
    let float = |v: Option<f64>| v.map_or(Dynamic::UNIT, |v| Dynamic::from_float(v as FLOAT));
    map.insert("provider".into(), Dynamic::from(info.provider));
    map.insert("input_usd_per_mtok".into(), float(info.input_usd_per_mtok));
    map.insert(
        "output_usd_per_mtok".into(),
        float(info.output_usd_per_mtok),
    );
    map.insert(
        "context_window".into(),
        info.context_window.map_or(Dynamic::UNIT, |n| {
            Dynamic::from_int(INT::try_from(n).unwrap_or(INT::MAX))
        }),
    );
    Dynamic::from_map(map)
}

fn register_helpers(engine: &mut Engine, host: Arc<dyn HostInfo>) {
    let h = host.clone();
    engine.register_fn("model_info", move |name: &str| -> Dynamic {
        h.model_info(name).map_or(Dynamic::UNIT, model_info_map)
    });
    let h = host.clone();
    engine.register_fn("provider_healthy", move |provider: &str| -> bool {
        h.provider_healthy(provider)
    });
    let h = host.clone();
    engine.register_fn("latency_ms", move |model: &str, pct: FLOAT| -> Dynamic {
        latency(h.as_ref(), model, pct)
    });
    let h = host.clone();
    engine.register_fn("latency_ms", move |model: &str, pct: INT| -> Dynamic {
        latency(h.as_ref(), model, pct as FLOAT)
    });
    let h = host.clone();
    engine.register_fn("headroom", move |model: &str| -> Dynamic {
        h.headroom(model).map_or(Dynamic::UNIT, |tokens| {
            Dynamic::from_int(INT::try_from(tokens).unwrap_or(INT::MAX))
        })
    });
    let h = host;
    engine.register_fn("limit_status", move |key: &str| -> Dynamic {
        h.limit_status(key).map_or(Dynamic::UNIT, |status| {
            let mut map = rhai::Map::new();
            map.insert("window".into(), Dynamic::from(status.window.to_string()));
            map.insert("used".into(), Dynamic::from_int(status.used));
            map.insert(
                "limit".into(),
                Dynamic::from_int(INT::try_from(status.limit).unwrap_or(INT::MAX)),
            );
            map.insert(
                "resets_in_ms".into(),
                Dynamic::from_int(INT::try_from(status.resets_in_ms).unwrap_or(INT::MAX)),
            );
            Dynamic::from_map(map)
        })
    });
    engine.register_fn("log", |text: &str| {
        tracing::info!(target: "switchyard::policy::script", text, "policy log");
    });
    engine.register_fn("log", |value: Dynamic| {
        tracing::info!(target: "switchyard::policy::script", text = %value, "policy log");
    });
}

fn latency(host: &dyn HostInfo, model: &str, pct: FLOAT) -> Dynamic {
    host.latency_ms(model, pct)
        .map_or(Dynamic::UNIT, |ms| Dynamic::from_float(ms as FLOAT))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::host::{ConfigHost, LatencyWindow};

    fn engine() -> PolicyEngine {
        let window = Arc::new(LatencyWindow::new());
        window.observe_latency("fast", 120.0);
        let host = ConfigHost::from_models([(
            "fast".to_string(),
            ModelInfo {
                provider: "mock".into(),
                input_usd_per_mtok: Some(0.15),
                output_usd_per_mtok: Some(0.6),
                context_window: Some(128_000),
            },
        )])
        .with_latency(window)
        .with_health(Arc::new(|p| p == "mock"));
        PolicyEngine::new(Arc::new(host), 10_000)
    }

    fn run(engine: &PolicyEngine, body: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let ast = engine
            .rhai()
            .compile(format!("fn f() {{ {body} }}"))
            .unwrap();
        engine.call(&ast, "f", ())
    }

    #[test]
    fn helpers_answer_from_the_host() {
        let e = engine();
        let v = run(&e, r#"model_info("fast").provider"#).unwrap();
        assert_eq!(v.into_string().unwrap(), "mock");
        let v = run(&e, r#"model_info("fast").input_usd_per_mtok"#).unwrap();
        assert_eq!(v.as_float().unwrap(), 0.15);
        assert!(run(&e, r#"model_info("nope")"#).unwrap().is_unit());
        assert!(run(&e, r#"provider_healthy("mock")"#)
            .unwrap()
            .as_bool()
            .unwrap());
        assert!(!run(&e, r#"provider_healthy("x")"#)
            .unwrap()
            .as_bool()
            .unwrap());
        assert_eq!(
            run(&e, r#"latency_ms("fast", 50)"#)
                .unwrap()
                .as_float()
                .unwrap(),
            120.0
        );
        assert_eq!(
            run(&e, r#"latency_ms("fast", 99.0)"#)
                .unwrap()
                .as_float()
                .unwrap(),
            120.0
        );
        assert!(run(&e, r#"latency_ms("slow", 50)"#).unwrap().is_unit());
        let _ = run(&e, r#"log("hello"); log(42); print("x"); debug("y");"#).unwrap();
    }

    #[test]
    fn math_log_still_works_beside_the_log_helper() {
        let v = run(&engine(), "log(100.0)").unwrap();
        assert_eq!(v.as_float().unwrap(), 2.0);
    }

    #[test]
    fn eval_and_import_are_not_available() {
        let e = engine();
        assert!(e.rhai().compile(r#"fn f() { eval("1") }"#).is_err());
        let ast = e.rhai().compile(r#"fn f() { import "x" as y; 1 }"#);
        if let Ok(ast) = ast {
            assert!(e.call(&ast, "f", ()).is_err());
        }
    }

    #[test]
    fn operation_limit_stops_an_endless_loop() {
        let err = run(&engine(), "loop {}").unwrap_err();
        assert!(
            matches!(err.unwrap_inner(), EvalAltResult::ErrorTooManyOperations(_)),
            "{err}"
        );
    }

    #[test]
    fn size_limits_stop_a_growing_string() {
        let err = run(&engine(), r#"let s = "x"; loop { s += s; }"#).unwrap_err();
        assert!(
            matches!(err.unwrap_inner(), EvalAltResult::ErrorDataTooLarge(..)),
            "{err}"
        );
    }

    #[test]
    fn undefined_variables_are_compile_errors() {
        let e = engine();
        assert!(e.rhai().compile("const X = 1; fn f() { X }").is_err());
    }
}
