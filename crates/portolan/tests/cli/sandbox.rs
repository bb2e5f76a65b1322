//! The jq sandbox as the binary runs it: `portolan jq-sandbox` children, with the binary's own
//! allocator, under the memory limit the server gives them.

use portolan_server::sandbox::JqSandbox;
use serde_json::json;

#[tokio::test]
async fn the_binarys_sandbox_evaluates_and_holds_its_memory_limit() {
    let sandbox = JqSandbox::new(env!("CARGO_BIN_EXE_portolan").into(), vec!["jq-sandbox".into()]);
    assert_eq!(sandbox.eval(".a + 1", &json!({"a": 41})).await, Ok(vec![json!(42)]));
    let bomb = sandbox.eval("[range(200000000)] | length", &json!(null)).await;
    assert!(bomb.is_err(), "an expression past the memory limit fails: {bomb:?}");
    assert_eq!(sandbox.eval(".a * 2", &json!({"a": 21})).await, Ok(vec![json!(42)]), "and the next one runs");
}
