//! `diffuse completions SHELL` and `diffuse man`: shell completions and manual pages generated
//! from the clap definitions, so they never fall behind the flags.
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for. Install, e.g.: `diffuse completions bash >
    /// ~/.local/share/bash-completion/completions/diffuse`, `diffuse completions zsh >
    /// ~/.zfunc/_diffuse` (with `fpath+=~/.zfunc` before `compinit`), `diffuse completions fish >
    /// ~/.config/fish/completions/diffuse.fish`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write one page per command (`diffuse.1`, `diffuse-image-sample.1`, …) into this folder
    /// instead of printing the top-level page to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The whole command tree, as clap sees it.
fn command() -> clap::Command {
    super::Cli::command()
}

pub fn completions(a: &CompletionsArgs) -> Result<()> {
    // Generated into memory first: clap_complete panics when its writer fails, e.g. on a
    // closed pipe (`diffuse completions bash | head`).
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut command(), "diffuse", &mut buf);
    to_stdout(&buf, "completions")
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn to_stdout(bytes: &[u8], what: &str) -> Result<()> {
    let r = std::io::stdout()
        .lock()
        .write_all(bytes)
        .and_then(|()| std::io::stdout().lock().flush());
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).with_context(|| format!("cannot write the {what} to stdout"))
        }
        _ => Ok(()),
    }
}

pub fn man(a: &ManArgs) -> Result<()> {
    match &a.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --out folder {}", dir.display()))?;
            clap_mangen::generate_to(command(), dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            eprintln!("man pages written to {}", dir.display());
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(command()).render(&mut buf)?;
            to_stdout(&buf, "man page")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    /// Every subcommand at any depth, as (parent path, name), from the clap definitions.
    fn subcommands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        for sub in cmd.get_subcommands() {
            out.push((path.to_string(), sub.get_name().to_string()));
            subcommands(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    fn script(shell: Shell) -> String {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut command(), "diffuse", &mut buf);
        String::from_utf8(buf).unwrap()
    }

    /// `name` as a whole word: not only inside a longer name (`run` in `prune`).
    fn has_word(text: &str, name: &str) -> bool {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '-';
        text.match_indices(name).any(|(i, _)| {
            !text[..i].chars().next_back().is_some_and(word)
                && !text[i + name.len()..].chars().next().is_some_and(word)
        })
    }

    #[test]
    fn completions_name_every_subcommand_in_three_shells() {
        let mut subs = Vec::new();
        subcommands(&command(), "diffuse", &mut subs);
        let names: Vec<&str> = subs.iter().map(|(_, n)| n.as_str()).collect();
        // The tree really is the CLI's (not an empty or partial walk).
        for known in [
            "toy",
            "image",
            "fid",
            "prepare-eval",
            "cfg-sweep",
            "completions",
            "man",
        ] {
            assert!(names.contains(&known), "{known} not in {names:?}");
        }
        assert!(names.len() > 20, "{names:?}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            for (parent, name) in &subs {
                assert!(
                    has_word(&s, name),
                    "{shell} completions do not mention `{parent} {name}`"
                );
            }
            // And the flags of a leaf command, e.g. `diffuse fid --save-stats`.
            let flag = if shell == Shell::Fish {
                "save-stats"
            } else {
                "--save-stats"
            };
            assert!(has_word(&s, flag), "{shell}: no {flag}");
        }
        // Fish completes a nested command under its parent's condition.
        assert!(script(Shell::Fish).contains("__fish_diffuse_using_subcommand image"));
    }

    #[test]
    fn man_page_renders_with_program_name_and_commands() {
        let mut buf = Vec::new();
        clap_mangen::Man::new(command()).render(&mut buf).unwrap();
        let page = String::from_utf8(buf).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH diffuse"),
            "{page}"
        );
        assert!(page.contains(".TH diffuse 1"), "{page}");
        assert!(
            page.contains("diffuse\\-fid") || page.contains("fid"),
            "{page}"
        );
        assert!(page.contains("Denoising diffusion models"), "{page}");

        let dir = std::env::temp_dir().join(format!("diffuse_man_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        man(&ManArgs {
            out: Some(dir.clone()),
        })
        .unwrap();
        for f in ["diffuse.1", "diffuse-fid.1", "diffuse-image-sample.1"] {
            let p = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(p.contains(".TH diffuse"), "{f}: {p}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
