//! The jq sandbox as its own program, for embedders and tests that run the server in process
//! (the `portolan` binary serves the same as `portolan jq-sandbox`).

fn main() -> std::io::Result<()> {
    portolan_server::sandbox::serve_sandbox()
}
