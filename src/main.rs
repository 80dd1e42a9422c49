use std::os::unix::process::CommandExt;

fn main() -> std::process::ExitCode {
    // libtorch's OpenMP threads spin while they wait for work by default. Beside another process
    // doing the same (parallel tests, a pretraining run, a second pipeline) on few cores, the
    // spinning threads starve each other: a 22 s fine-tune took 290 s on 2 cores. Waiting
    // passively costs little alone and keeps shared machines usable. OpenMP reads the setting
    // when libtorch loads, before `main`, so the process starts itself again (same pid) with it
    // set; an explicit setting wins, and if that exec fails it carries on as it is.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        if let Ok(exe) = std::env::current_exe() {
            let _ = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("OMP_WAIT_POLICY", "PASSIVE").exec();
        }
    }
    restock::cli::main()
}
