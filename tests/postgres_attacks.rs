//! Adversarial vectors: a dump that tries to run code on the drill host
//! (issue 11, "a database dump runs code on the drill host").
//!
//! Each vector builds a database with the capabilities of an ordinary,
//! non-superuser application role `app` (owner of its database), plants a
//! payload that stays quiet in production (`current_database() = 'app'`)
//! and fires anywhere else: it runs `COPY … TO PROGRAM` (or `lo_export`,
//! or Perl) to append to a marker file, and tries to copy the drill's
//! credentials into it. `vault backup --postgres` stores the dump.
//!
//! - **control**: the same dump, restored with plain `pg_restore --no-owner`
//!   as a superuser (what drills did before), must make the marker appear:
//!   so no vector passes for the wrong reason;
//! - **vault**: `vault restore --verify` (held as a real drill host holds
//!   its secrets: credentials directory, `VAULT_*`, `AWS_*`, `PGPASSWORD`)
//!   must leave no marker, and end as the vector states.
//!
//! Two vectors need objects only a superuser can create (an event trigger,
//! an untrusted-language function). An ordinary role cannot put them in a
//! dump, but the dump is not only the database's: a writer key holder (a
//! compromised backup host) stores whatever bytes it likes as
//! `postgres/app.dump`, and a database whose application runs as superuser
//! can hold them too. The tests create those objects as superuser, standing
//! in for that attacker; vault must then refuse the dump with the named
//! failure `needs_superuser` (exit 4, in the report and the drill record).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::postgres::*;
use crate::postgres_isolation::{FAKE_SECRET, Secrets};
use crate::util::*;

/// How a vector's drill must end.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// The load succeeds (the payload is denied and swallows the error):
    /// the drill passes.
    Passes,
    /// The dump cannot load without superuser: a named drill failure.
    NeedsSuperuser,
}

/// One attack. `MARKER`, `MARKER_SQL` (a SQL literal) and `PROGRAM_SQL`
/// (a SQL literal: the shell command the payload runs) are filled in.
struct Vector {
    /// Superuser statements before `app` builds its objects.
    superuser_before: &'static str,
    /// What the ordinary role `app` creates in its database.
    as_app: &'static str,
    /// Superuser statements afterwards.
    superuser_after: &'static str,
    /// A query the control runs as an ordinary role `reader` after its
    /// restore (for payloads that wait for someone to read a table).
    control_reads: Option<&'static str>,
    /// What the marker holds when the payload fired.
    tag: &'static str,
    expect: Expect,
}

/// The payload: quiet in production, fires elsewhere, never fails the
/// statement that ran it (a careful attacker keeps the load going).
const PAYLOAD: &str =
    "CREATE FUNCTION public.payload(tag text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF current_database() <> 'app' THEN
    BEGIN
      EXECUTE pg_catalog.format('COPY (SELECT %L) TO PROGRAM %L', tag, PROGRAM_SQL);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END IF;
  RETURN true;
END $f$;
";

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn fill(sql: &str, marker: &Path, secret: &Path) -> String {
    let m = marker.display().to_string();
    let program = format!(
        "cat >> {m}; cat {} >> {m} 2>/dev/null; true",
        secret.display()
    );
    sql.replace("PROGRAM_SQL", &literal(&program))
        .replace("MARKER_SQL", &literal(&m))
        .replace("MARKER", &m)
        .replace("CREDENTIALS", &secret.display().to_string())
}

fn run_vector(v: &Vector) {
    let pg = PgServer::start();
    let env = Env::new();
    drill_tmp(&env); // the workspace becomes traversable by the servers' users
    let markers = env.path("markers");
    fs::create_dir_all(&markers).unwrap();
    fs::set_permissions(&markers, fs::Permissions::from_mode(0o1777)).unwrap();
    let marker: PathBuf = markers.join("fired");
    let secrets = Secrets::plant(&env, None);

    pg.sql("postgres", "CREATE ROLE app LOGIN");
    pg.sql("postgres", "CREATE DATABASE app OWNER app");
    let superuser_before = fill(v.superuser_before, &marker, &secrets.file);
    if !superuser_before.is_empty() {
        pg.sql("app", &superuser_before);
    }
    let as_app = fill(&format!("{PAYLOAD}{}", v.as_app), &marker, &secrets.file);
    pg.sql_as("app", "app", &as_app);
    let superuser_after = fill(v.superuser_after, &marker, &secrets.file);
    if !superuser_after.is_empty() {
        pg.sql("app", &superuser_after);
    }
    assert!(!marker.exists(), "the payload stays quiet in production");
    let (out, _) = env.backup_json(&["--postgres", &pg.conninfo("app")]);
    assert_success(&out);

    // Control: a superuser restore outside vault fires the payload.
    let target = env.path("restored");
    assert_success(&env.restore("latest", &target));
    pg.restore_dump(&target.join("postgres/app.dump"), "control");
    if let Some(q) = v.control_reads {
        pg.sql(
            "postgres",
            "CREATE ROLE reader LOGIN; GRANT pg_read_all_data TO reader",
        );
        pg.sql_as("reader", "control", q);
    }
    let fired = fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        fired.contains(v.tag),
        "control: the payload did not fire under a superuser restore (marker: {fired:?})"
    );
    fs::remove_file(&marker).unwrap();

    // vault: the same dump, drilled on a host holding secrets.
    let mut cmd = drill_command(&env, &["--json"]);
    cmd.env("VAULT_IDENTITY", &env.owner_key);
    secrets.to(&mut cmd);
    let out = cmd.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", stderr(&out)));
    assert!(
        !marker.exists(),
        "the payload left the database: {:?}",
        fs::read_to_string(&marker)
    );
    let db = &report["report"]["databases"][0];
    match v.expect {
        Expect::Passes => {
            assert_success(&out);
            assert_eq!(db["passed"], true, "{db}");
        }
        Expect::NeedsSuperuser => {
            assert_code(&out, 4);
            assert_eq!(db["failure"], "needs_superuser", "{db}");
            let record = report["drill"].as_str().expect("a drill record");
            let repo = open_repo(&env.repo, &env.owner_key);
            let r: serde_json::Value = repo.get_json(&format!("drills/{record}")).unwrap();
            assert_eq!(r["passed"], false);
            assert_eq!(r["summary"]["databases_needing_superuser"], 1, "{r}");
        }
    }
    assert!(!report.to_string().contains(FAKE_SECRET));
    assert!(scratch_clusters(&env).is_empty());
}

#[test]
fn vector_check_constraint_copy_to_program() {
    run_vector(&Vector {
        superuser_before: "",
        as_app: "CREATE TABLE t_check (id int CHECK (public.payload('check constraint')));
                 INSERT INTO t_check SELECT generate_series(1, 3);",
        superuser_after: "",
        control_reads: None,
        tag: "check constraint",
        expect: Expect::Passes,
    });
}

#[test]
fn vector_expression_index() {
    run_vector(&Vector {
        superuser_before: "",
        // Index expressions must be immutable: declaring a function so is
        // enough, and any role may.
        as_app: "CREATE FUNCTION public.imm(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $f$
                 BEGIN PERFORM public.payload('expression index'); RETURN $1; END $f$;
                 CREATE TABLE t_idx (id int);
                 INSERT INTO t_idx VALUES (1), (2);
                 CREATE INDEX t_idx_imm ON t_idx (public.imm(id));",
        superuser_after: "",
        control_reads: None,
        tag: "expression index",
        expect: Expect::Passes,
    });
}

#[test]
fn vector_trigger() {
    run_vector(&Vector {
        superuser_before: "",
        // Triggers are restored after the data; the materialized view,
        // refreshed last, inserts a row (and takes it back) to fire one.
        as_app: "CREATE TABLE t_trg (x int);
                 CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN PERFORM public.payload('trigger'); RETURN NEW; END $f$;
                 CREATE TRIGGER tr AFTER INSERT ON t_trg FOR EACH ROW EXECUTE FUNCTION public.trg();
                 CREATE FUNCTION public.poke() RETURNS int LANGUAGE plpgsql AS $f$
                 BEGIN INSERT INTO public.t_trg VALUES (-1); DELETE FROM public.t_trg WHERE x = -1; RETURN 1; END $f$;
                 CREATE MATERIALIZED VIEW mv_trg AS SELECT public.poke() AS x;",
        superuser_after: "",
        control_reads: None,
        tag: "trigger",
        expect: Expect::Passes,
    });
}

#[test]
fn vector_column_default() {
    run_vector(&Vector {
        superuser_before: "",
        as_app: "CREATE FUNCTION public.dflt() RETURNS int LANGUAGE plpgsql AS $f$
                 BEGIN PERFORM public.payload('column default'); RETURN 7; END $f$;
                 CREATE TABLE t_def (id int, c int DEFAULT public.dflt());
                 CREATE FUNCTION public.poke() RETURNS int LANGUAGE plpgsql AS $f$
                 BEGIN INSERT INTO public.t_def (id) VALUES (-1); DELETE FROM public.t_def WHERE id = -1; RETURN 1; END $f$;
                 CREATE MATERIALIZED VIEW mv_def AS SELECT public.poke() AS x;",
        superuser_after: "",
        control_reads: None,
        tag: "column default",
        expect: Expect::Passes,
    });
}

#[test]
fn vector_event_trigger() {
    run_vector(&Vector {
        superuser_before: "",
        // Restored last, just before the materialized view's refresh,
        // which is DDL to an event trigger.
        as_app: "CREATE FUNCTION public.evt() RETURNS event_trigger LANGUAGE plpgsql AS $f$
                 BEGIN PERFORM public.payload('event trigger on ' || tg_tag); END $f$;
                 CREATE MATERIALIZED VIEW mv_evt AS SELECT 1 AS x;",
        superuser_after: "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION public.evt();",
        control_reads: None,
        tag: "event trigger on REFRESH MATERIALIZED VIEW",
        expect: Expect::NeedsSuperuser,
    });
}

#[test]
fn vector_lo_export() {
    run_vector(&Vector {
        superuser_before: "",
        as_app: "CREATE FUNCTION public.lox() RETURNS boolean LANGUAGE plpgsql AS $f$
                 DECLARE o oid;
                 BEGIN
                   IF current_database() <> 'app' THEN
                     BEGIN
                       o := pg_catalog.lo_from_bytea(0, 'lo_export'::bytea);
                       PERFORM pg_catalog.lo_export(o, MARKER_SQL);
                     EXCEPTION WHEN OTHERS THEN NULL;
                     END;
                   END IF;
                   RETURN true;
                 END $f$;
                 CREATE TABLE t_lo (id int CHECK (public.lox()));
                 INSERT INTO t_lo VALUES (1);",
        superuser_after: "",
        control_reads: None,
        tag: "lo_export",
        expect: Expect::Passes,
    });
}

#[test]
fn vector_untrusted_language() {
    run_vector(&Vector {
        // PL/PerlU is a superuser's language (see the module docs for who
        // can put it in a dump); the drill host has it installed too
        // (scripts/install-test-deps.sh), so only the loading role's lack
        // of superuser stands in the way.
        superuser_before: "CREATE EXTENSION plperlu;
            CREATE FUNCTION public.perl_payload() RETURNS boolean LANGUAGE plperlu AS $f$
              my $db = spi_exec_query('SELECT current_database() AS d')->{rows}[0]{d};
              if ($db ne 'app') {
                open(my $fh, '>>', 'MARKER') or return 1;
                print $fh \"plperlu\\n\";
                close $fh;
                system('cat CREDENTIALS >> MARKER 2>/dev/null');
              }
              return 1;
            $f$;",
        as_app: "CREATE TABLE t_perl (id int CHECK (public.perl_payload()));
                 INSERT INTO t_perl VALUES (1);",
        superuser_after: "",
        control_reads: None,
        tag: "plperlu",
        expect: Expect::NeedsSuperuser,
    });
}

#[test]
fn vector_security_definer() {
    run_vector(&Vector {
        superuser_before: "",
        // A SECURITY DEFINER function runs as its owner: after a
        // `--no-owner` restore, whoever loaded it. A row-level security
        // policy calls it whenever a role that does not bypass RLS counts
        // the table (the drill counts every table): were dumps loaded by a
        // privileged role and counted by an unprivileged one, this would
        // fire, as the control shows. The drill loads and counts as one
        // unprivileged role.
        as_app:
            "CREATE FUNCTION public.sd() RETURNS boolean SECURITY DEFINER LANGUAGE plpgsql AS $f$
                 BEGIN RETURN public.payload('security definer'); END $f$;
                 CREATE TABLE t_rls (id int);
                 INSERT INTO t_rls VALUES (1), (2);
                 ALTER TABLE t_rls ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE t_rls FORCE ROW LEVEL SECURITY;
                 CREATE POLICY p ON t_rls USING (public.sd());",
        superuser_after: "",
        control_reads: Some("SELECT count(*) FROM public.t_rls"),
        tag: "security definer",
        expect: Expect::Passes,
    });
}
