//! Runs jq expressions in child processes (`portolan jq-sandbox`) that the server can kill: an
//! expression that loops, recurses without end or grows without bound costs one child process,
//! never the server. Children are reused while they behave.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// Longest an evaluation may take before its child is killed.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Most outputs taken from one evaluation.
pub const MAX_OUTPUTS: usize = 16;
/// Largest answer read back from a child, in bytes.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub struct JqSandbox {
    program: PathBuf,
    args: Vec<String>,
    idle: Mutex<Vec<Worker>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl JqSandbox {
    /// A sandbox that starts children with `program args...`.
    pub fn new(program: PathBuf, args: Vec<String>) -> Self {
        Self { program, args, idle: Mutex::new(Vec::new()) }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .env_clear()
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the jq sandbox: {e}"))?;
        let stdin = child.stdin.take().ok_or("the jq sandbox has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("the jq sandbox has no stdout")?);
        Ok(Worker { child, stdin, stdout })
    }

    /// Evaluates `code` on `input`; the outputs, or why there are none.
    pub async fn eval(&self, code: &str, input: &Value) -> Result<Vec<Value>, String> {
        let idle = self.idle.lock().await.pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn()?,
        };
        let request = json!({"code": code, "input": input, "max": MAX_OUTPUTS}).to_string() + "\n";
        let exchange = async {
            worker.stdin.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
            worker.stdin.flush().await.map_err(|e| e.to_string())?;
            let mut line = String::new();
            let read = (&mut worker.stdout)
                .take(MAX_ANSWER_BYTES as u64)
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if read == 0 {
                return Err("the expression crashed its sandbox".to_string());
            }
            Ok(line)
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(line)) => {
                let answer: Value =
                    serde_json::from_str(&line).map_err(|_| "the sandbox answered garbage".to_string())?;
                self.idle.lock().await.push(worker);
                match answer {
                    Value::Object(mut map) => match (map.remove("ok"), map.remove("error")) {
                        (Some(Value::Array(outputs)), _) => Ok(outputs),
                        (_, Some(Value::String(error))) => Err(error),
                        _ => Err("the sandbox answered garbage".into()),
                    },
                    _ => Err("the sandbox answered garbage".into()),
                }
            }
            Ok(Err(error)) => {
                let _ = worker.child.kill().await;
                Err(error)
            }
            Err(_) => {
                let _ = worker.child.kill().await;
                Err(format!("the expression ran longer than {} ms", TIMEOUT.as_millis()))
            }
        }
    }
}

/// Compiled programs a child keeps; the same few templates and calculations run over and over.
const PROGRAM_CACHE: usize = 256;

/// The child's side: answers one request per line on stdin, until stdin closes. It exits when its
/// parent goes (a server killed with SIGKILL must not leave a runaway expression spinning).
pub fn serve_sandbox() -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(1);
            }
        }
    });
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut cache: std::collections::HashMap<String, portolan_model::jq::Program> = std::collections::HashMap::new();
    for line in stdin.lock().lines() {
        let request: Value = serde_json::from_str(&line?).unwrap_or(Value::Null);
        let code = request["code"].as_str().unwrap_or_default();
        let max = request["max"].as_u64().unwrap_or(1) as usize;
        if !cache.contains_key(code) && cache.len() >= PROGRAM_CACHE {
            cache.clear();
        }
        let outcome = match cache.entry(code.to_string()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.get().run(&request["input"], max),
            std::collections::hash_map::Entry::Vacant(entry) => match portolan_model::jq::compile(code) {
                Ok(program) => entry.insert(program).run(&request["input"], max),
                Err(error) => Err(error),
            },
        };
        let answer = match outcome {
            Ok(outputs) => json!({"ok": outputs}),
            Err(error) => json!({"error": error}),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}
