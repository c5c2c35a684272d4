use std::process::ExitCode;

fn main() -> ExitCode {
    livefs::cli::main()
}
