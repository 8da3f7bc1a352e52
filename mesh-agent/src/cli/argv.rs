//! Go-style flags to clap's: Consul's commands (Go's `flag` package) take long flags with a
//! single dash (`-name web`, `-token=X`); clap takes `--name`. The rewrite happens before
//! clap sees the arguments.

use std::ffi::OsString;

/// `args` with every `-word` / `-word=value` (a single dash, then a letter and at least one
/// more name character) turned into `--word` / `--word=value`. The program name, `-`
/// (stdin), single-letter flags (`-h`), negative numbers, `--flags` and everything after a
/// `--` are left as they are.
pub(crate) fn go_style(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut positional_only = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || positional_only {
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some("--") => {
                positional_only = true;
                out.push(arg);
            }
            Some(s) if is_go_long_flag(s) => out.push(format!("-{s}").into()),
            _ => out.push(arg),
        }
    }
    out
}

/// clap's help and error text with long flags written Go style, as the user typed them and
/// as Consul's documentation writes them: `--name <NAME>` becomes `-name <NAME>`.
pub(crate) fn go_style_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let starts_flag = c == '-'
            && prev.is_none_or(|p| {
                p.is_whitespace() || matches!(p, '[' | '(' | '<' | '|' | '\'' | ',')
            })
            && chars.peek() == Some(&'-');
        if starts_flag {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.next().is_some_and(|n| n.is_ascii_alphabetic()) {
                // Drop one of the two dashes.
                chars.next();
            }
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// `-ab…` or `-ab…=value` with a name of at least two characters, starting with a letter,
/// made of letters, digits, `-` and `_`.
fn is_go_long_flag(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('-') else {
        return false;
    };
    let name = rest.split_once('=').map_or(rest, |(name, _)| name);
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        go_style(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap_or_default())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            rewrite(&["mesh", "acl", "policy", "create", "-name", "mesh-gateway"]),
            ["mesh", "acl", "policy", "create", "--name", "mesh-gateway"]
        );
        assert_eq!(
            rewrite(&["mesh", "x", "-token=abc", "-http-addr=127.0.0.1:1"]),
            ["mesh", "x", "--token=abc", "--http-addr=127.0.0.1:1"]
        );
        assert_eq!(rewrite(&["mesh", "x", "-dc"]), ["mesh", "x", "--dc"]);
        assert_eq!(
            rewrite(&["mesh", "x", "-policy_name"]),
            ["mesh", "x", "--policy_name"]
        );
    }

    #[test]
    fn values_after_equals_are_kept_verbatim() {
        assert_eq!(
            rewrite(&["mesh", "x", "-rules=-weird -value"]),
            ["mesh", "x", "--rules=-weird -value"]
        );
    }

    #[test]
    fn other_arguments_are_untouched() {
        let same = [
            "mesh",
            "-",
            "-h",
            "-1",
            "-42",
            "-1.5",
            "--name",
            "--token=x",
            "web",
            "@file.json",
            "-x",
            "-2d",
            "-é-accent",
        ];
        assert_eq!(rewrite(&same), same);
    }

    #[test]
    fn nothing_after_a_double_dash_is_rewritten() {
        assert_eq!(
            rewrite(&["mesh", "-name", "--", "-name", "-deny"]),
            ["mesh", "--name", "--", "-name", "-deny"]
        );
    }

    #[test]
    fn the_program_name_is_never_rewritten() {
        assert_eq!(rewrite(&["-mesh", "-help"]), ["-mesh", "--help"]);
    }

    #[test]
    fn help_text_shows_go_style_flags() {
        assert_eq!(
            go_style_text("Usage: mesh acl policy create [OPTIONS] --name <NAME>\n  -h, --help\n"),
            "Usage: mesh acl policy create [OPTIONS] -name <NAME>\n  -h, -help\n"
        );
        assert_eq!(
            go_style_text("error: unexpected argument '--nope' found; [--token <T>]"),
            "error: unexpected argument '-nope' found; [-token <T>]"
        );
        assert_eq!(
            go_style_text("<--id <ID>|--self[=<BOOL>]>"),
            "<-id <ID>|-self[=<BOOL>]>"
        );
        // A lone `--`, and dashes inside words, stay.
        assert_eq!(go_style_text("a -- b x--y --1"), "a -- b x--y --1");
    }

    #[test]
    fn non_utf8_arguments_pass_through() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let odd = OsString::from_vec(vec![b'-', b'a', 0xff]);
            let out = go_style([OsString::from("mesh"), odd.clone()]);
            assert_eq!(out[1], odd);
        }
    }
}
