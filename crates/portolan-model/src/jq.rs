//! jq expressions (via jaq), for calculation properties and templates. This module only parses
//! and evaluates; it has no bound on time or stack, so the server runs evaluations in a separate,
//! disposable process (`portolan jq-sandbox`) that it can kill, and only checks syntax in process.
//! The whole jq standard library is available: the sandbox process runs with an empty
//! environment (so `env` reveals nothing) and its stderr discarded (so `debug` goes nowhere).

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use serde_json::Value;

/// Longest expression a person may write, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4 * 1024;
/// Longest program compiled: a mapping's program joins many expressions.
pub const MAX_PROGRAM_BYTES: usize = 256 * 1024;

fn check_length(code: &str, limit: usize) -> Result<(), String> {
    if code.len() > limit {
        return Err(format!("the expression is {} bytes; the limit is {limit}", code.len()));
    }
    Ok(())
}

/// jq's own definitions that jaq leaves out and that Port's documented mappings use.
const JQ_DEFS: &str = "def IN(s): any(s == .; .); def IN(src; s): any(src == s; .);";

fn jq_defs() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    jaq_core::load::parse(JQ_DEFS, |p| p.defs()).unwrap_or_default().into_iter()
}

/// A compiled expression, to run on many inputs.
pub struct Program(jaq_core::Filter<data::JustLut<Val>>);

/// Parses and compiles an expression (with the whole standard library: the costly part).
pub fn compile(code: &str) -> Result<Program, String> {
    check_length(code, MAX_PROGRAM_BYTES)?;
    let loader = Loader::new(jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).chain(jq_defs()));
    let arena = Arena::default();
    let modules =
        loader.load(&arena, File { code, path: () }).map_err(|errors| format!("does not parse: {errors:?}"))?;
    Compiler::<_, data::JustLut<Val>>::default()
        .with_funs(jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs()))
        .compile(modules)
        .map(Program)
        .map_err(|errors| format!("does not compile: {errors:?}"))
}

/// Checks that an expression parses and compiles.
pub fn check(code: &str) -> Result<(), String> {
    check_length(code, MAX_EXPRESSION_BYTES)?;
    compile(code).map(|_| ())
}

impl Program {
    /// Runs the program on `input`; at most `max_outputs` outputs are taken.
    pub fn run(&self, input: &Value, max_outputs: usize) -> Result<Vec<Value>, String> {
        let input: Val = serde_json::from_value(input.clone()).map_err(|e| e.to_string())?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.0.lut, Vars::new([]));
        let mut outputs = Vec::new();
        for output in self.0.id.run((ctx, input)).map(unwrap_valr).take(max_outputs) {
            let value = output.map_err(|e| format!("failed: {e}"))?;
            outputs
                .push(serde_json::from_str(&value.to_string()).map_err(|e| format!("gave an unreadable value: {e}"))?);
        }
        Ok(outputs)
    }
}

/// Runs an expression on `input`; at most `max_outputs` outputs are taken.
pub fn eval(code: &str, input: &Value, max_outputs: usize) -> Result<Vec<Value>, String> {
    compile(code)?.run(input, max_outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_and_bounds_outputs() {
        let input = json!({"properties": {"replicas": 3, "name": "cart"}});
        assert_eq!(eval(".properties.replicas * 2", &input, 4), Ok(vec![json!(6)]));
        assert_eq!(eval(".properties.name | ascii_upcase", &input, 4), Ok(vec![json!("CART")]));
        assert_eq!(eval("repeat(1)", &input, 3).map(|v| v.len()), Ok(3), "an endless stream is cut");
        assert!(eval(".properties.name + 1", &input, 4).is_err());
        assert!(check(".a | ").is_err());
        assert!(check(&"1+".repeat(3000)).is_err());
    }

    #[test]
    fn jqs_in_is_there_as_ports_mappings_use_it() {
        let input = json!({"state": "merged"});
        assert_eq!(eval(r#".state | IN("merged", "closed")"#, &input, 4), Ok(vec![json!(true)]));
        assert_eq!(eval(r#".state | IN("open")"#, &input, 4), Ok(vec![json!(false)]));
        assert_eq!(eval(r#"IN(.state; "open", "merged")"#, &input, 4), Ok(vec![json!(true)]));
    }
}
