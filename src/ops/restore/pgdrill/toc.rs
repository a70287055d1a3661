//! A custom-format dump's table of contents (`pg_restore -l`), read as
//! hostile text: which extensions it needs, and the list (`pg_restore -L`)
//! that the unprivileged role loads. Pure text in, text out.
//!
//! A drill creates the extensions a dump needs itself, as superuser, from
//! statements it writes (never the dump's own SQL), and only extensions the
//! server has installed. Everything else in the dump is loaded by a role
//! without superuser: the extension entries and their comments (which need
//! the extension's owner) are left out of its list.

/// One extension a dump needs: `CREATE EXTENSION IF NOT EXISTS name WITH SCHEMA schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension's name (checked against `pg_available_extensions`).
    pub name: String,
    /// The schema it goes in (`None`: the server's default).
    pub schema: Option<String>,
}

/// What follows `ID; TABLEOID OID ` on a TOC line (`EXTENSION - citext `),
/// or `None` for comments, blank lines and anything malformed.
fn entry(line: &str) -> Option<&str> {
    let (id, rest) = line.split_once("; ")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut parts = rest.splitn(3, ' ');
    let (table_oid, oid) = (parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(table_oid) || !numeric(oid) {
        return None;
    }
    parts.next()
}

fn is_extension(e: &str) -> bool {
    e.starts_with("EXTENSION - ")
}

fn is_extension_comment(e: &str) -> bool {
    e.starts_with("COMMENT - EXTENSION ")
}

/// Whether `e` is the `SCHEMA - name owner` entry of schema `name` (an owner
/// with a space in it is not recognised: the load then fails loudly).
fn is_schema(e: &str, name: &str) -> bool {
    e.strip_prefix("SCHEMA - ")
        .and_then(|r| r.strip_prefix(name))
        .and_then(|r| r.strip_prefix(' '))
        .is_some_and(|owner| !owner.contains(' '))
}

/// The TOC lines of the dump's `EXTENSION` entries (a `-L` list that makes
/// `pg_restore -f -` print just their `CREATE EXTENSION` statements).
pub fn extension_list(toc: &str) -> String {
    toc.lines()
        .filter(|l| entry(l).is_some_and(is_extension))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The list the unprivileged role loads: the whole TOC without extensions,
/// comments on extensions, and the `SCHEMA` entries of schemas the drill
/// created beforehand for extensions.
pub fn load_list(toc: &str, created_schemas: &[String]) -> String {
    toc.lines()
        .filter(|l| match entry(l) {
            None => true,
            Some(e) => {
                !is_extension(e)
                    && !is_extension_comment(e)
                    && !created_schemas.iter().any(|s| is_schema(e, s))
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, folded to lower case as PostgreSQL does.
    Word(String),
    /// A quoted identifier, exactly as written.
    Quoted(String),
    Semicolon,
    Other,
}

/// Splits SQL into tokens: comments, string and dollar-quoted literals and
/// psql meta-commands are skipped whole, so that nothing inside them can
/// pass for a statement.
fn tokens(sql: &str) -> Vec<Token> {
    let b: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let at_line_start = std::mem::replace(&mut line_start, false);
        if (c == '\\' && at_line_start) || (c == '-' && b.get(i + 1) == Some(&'-')) {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            out.push(Token::Other);
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            i += 1;
            while i < b.len() {
                if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        text.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                text.push(b[i]);
                i += 1;
            }
            i += 1;
            out.push(if c == '"' {
                Token::Quoted(text)
            } else {
                Token::Other
            });
        } else if c == '$' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            if b.get(j) == Some(&'$') {
                let tag = &b[i..=j];
                let body = j + 1;
                i = b[body..]
                    .windows(tag.len())
                    .position(|w| w == tag)
                    .map_or(b.len(), |k| body + k + tag.len());
            } else {
                i += 1;
            }
            out.push(Token::Other);
        } else if c == ';' {
            out.push(Token::Semicolon);
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let mut w = String::new();
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$') {
                w.push(b[i]);
                i += 1;
            }
            out.push(Token::Word(w.to_lowercase()));
        } else {
            out.push(Token::Other);
            i += 1;
        }
    }
    out
}

/// The extensions in `pg_restore -f -` output of [`extension_list`]: every
/// `CREATE EXTENSION [IF NOT EXISTS] name [WITH] [SCHEMA s] …;` statement.
pub fn extensions(sql: &str) -> Vec<Extension> {
    let tokens = tokens(sql);
    let mut out = Vec::new();
    for stmt in tokens.split(|t| *t == Token::Semicolon) {
        let word = |i: usize, w: &str| matches!(stmt.get(i), Some(Token::Word(x)) if x == w);
        let ident = |i: usize| match stmt.get(i) {
            Some(Token::Word(x) | Token::Quoted(x)) => Some(x.clone()),
            _ => None,
        };
        if !(word(0, "create") && word(1, "extension")) {
            continue;
        }
        let mut i = 2;
        if word(2, "if") && word(3, "not") && word(4, "exists") {
            i = 5;
        }
        let Some(name) = ident(i) else { continue };
        i += 1;
        if word(i, "with") {
            i += 1;
        }
        let schema = if word(i, "schema") {
            ident(i + 1)
        } else {
            None
        };
        out.push(Extension { name, schema });
    }
    out
}

/// Quotes an identifier for SQL (`"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a name is one the drill is willing to put into SQL it runs as
/// superuser: printable, without quotes' friends (backslash, control
/// characters) that a psql script could read as something else.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.chars().any(|c| c.is_control() || c == '\\')
}

/// Whether pg_restore's error says the dump needs privileges the loading
/// role does not have (SQLSTATE 42501 and friends, as the C locale words
/// them). The text is the dump's to shape: this names the failure, it
/// decides nothing about safety.
pub fn needs_superuser(stderr: &str) -> bool {
    let e = stderr.to_lowercase();
    [
        "permission denied",
        "must be superuser",
        "must be owner of",
        "must be member of",
        "only superuser",
        "must have privileges of",
        "superuser",
    ]
    .iter()
    .any(|p| e.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOC: &str = ";\n; Archive created at 2026-11-29\n;\n\
        9; 2615 16573 SCHEMA - extensions postgres\n\
        3496; 0 0 COMMENT - SCHEMA extensions postgres\n\
        10; 2615 16600 SCHEMA - extensions_more postgres\n\
        2; 3079 16574 EXTENSION - citext \n\
        3497; 0 0 COMMENT - EXTENSION citext \n\
        4; 3079 16725 EXTENSION - uuid-ossp \n\
        3499; 0 0 COMMENT - EXTENSION \"uuid-ossp\" \n\
        219; 1259 16736 TABLE public people postgres\n\
        3489; 0 16736 TABLE DATA public people postgres\n\
        3233; 3466 16427 EVENT TRIGGER - et postgres\n";

    #[test]
    fn extension_entries_are_listed_and_left_out_of_the_load() {
        assert_eq!(
            extension_list(TOC),
            "2; 3079 16574 EXTENSION - citext \n4; 3079 16725 EXTENSION - uuid-ossp \n"
        );
        let load = load_list(TOC, &["extensions".into()]);
        assert!(!load.contains("EXTENSION -"), "{load}");
        assert!(!load.contains("COMMENT - EXTENSION"), "{load}");
        assert!(!load.contains("SCHEMA - extensions postgres"), "{load}");
        // Only the schema the drill created goes; its comment, the other
        // schema, tables, data and the event trigger stay (the event
        // trigger then fails for want of superuser, as it should).
        for keep in [
            "COMMENT - SCHEMA extensions",
            "SCHEMA - extensions_more postgres",
            "TABLE public people",
            "TABLE DATA public people",
            "EVENT TRIGGER - et",
            "; Archive created",
        ] {
            assert!(load.contains(keep), "{keep} missing from {load}");
        }
    }

    #[test]
    fn malformed_lines_are_never_taken_for_entries() {
        for bad in [
            "x; 3079 1 EXTENSION - citext ",
            "1; a 1 EXTENSION - citext ",
            "; 1; 3079 1 EXTENSION - citext ",
            "EXTENSION - citext",
        ] {
            assert_eq!(extension_list(bad), "", "{bad}");
        }
    }

    #[test]
    fn create_extension_statements_are_parsed_from_pg_restore_output() {
        let sql = "--\n-- Name: citext; Type: EXTENSION; Schema: -; Owner: -\n--\n\n\
            \\restrict abc\n\
            SET client_encoding = 'UTF8';\n\
            SELECT pg_catalog.set_config('search_path', '', false);\n\
            CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA extensions;\n\
            CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA public;\n\
            create extension hstore;\n";
        assert_eq!(
            extensions(sql),
            vec![
                Extension {
                    name: "citext".into(),
                    schema: Some("extensions".into())
                },
                Extension {
                    name: "uuid-ossp".into(),
                    schema: Some("public".into())
                },
                Extension {
                    name: "hstore".into(),
                    schema: None
                },
            ]
        );
    }

    #[test]
    fn statements_hidden_in_names_strings_and_comments_are_not_read() {
        // A schema name (chosen by any role that may create schemas) that
        // spans lines and holds a statement of its own: one extension only.
        let sql = "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA \"x;\nCREATE EXTENSION IF NOT EXISTS adminpack WITH SCHEMA public;\n\";\n\
            -- CREATE EXTENSION dblink;\n\
            SELECT 'CREATE EXTENSION file_fdw;';\n\
            SELECT $q$ CREATE EXTENSION plperlu; $q$;\n\
            /* CREATE EXTENSION pageinspect; */\n";
        let found = extensions(sql);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].name, "citext");
        assert_eq!(
            found[0].schema.as_deref(),
            Some("x;\nCREATE EXTENSION IF NOT EXISTS adminpack WITH SCHEMA public;\n")
        );
        assert!(!plain_name(found[0].schema.as_deref().unwrap()));
    }

    #[test]
    fn identifiers_are_quoted_and_vetted() {
        assert_eq!(quote_ident("uuid-ossp"), "\"uuid-ossp\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(plain_name("uuid-ossp") && plain_name("My Schema"));
        for bad in ["", "a\\b", "a\nb", &"x".repeat(64)] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn privilege_errors_are_recognised() {
        for e in [
            "pg_restore: error: could not execute query: ERROR:  permission denied to create event trigger \"et\"",
            "ERROR:  permission denied for language plperlu",
            "ERROR:  must be owner of extension citext",
            "ERROR:  must be superuser to create subscriptions",
        ] {
            assert!(needs_superuser(e), "{e}");
        }
        assert!(!needs_superuser(
            "pg_restore: error: input file does not appear to be a valid archive"
        ));
        assert!(!needs_superuser("ERROR:  relation \"x\" already exists"));
    }
}
