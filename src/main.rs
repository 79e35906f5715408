#[tokio::main]
async fn main() -> std::process::ExitCode {
    // First: processes of the same user (a check command among them) must
    // not read graft's environment or memory through /proc.
    graft::git::sandbox::harden_this_process();
    match graft::cli::main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
