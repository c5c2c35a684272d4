//! Writes livefs's man pages and shell completions, generated from the clap
//! definitions, into OUTDIR/man8/ and OUTDIR/completions/. `scripts/package`
//! runs it; it is an example so that the livefs binary carries neither
//! generator.
//!
//! The generated pages get sections clap cannot know, written here by hand:
//! exit status, files, examples and see also.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use livefs::cli::events::{EVENTS, FIELDS};
use livefs::cli::{exit, KINDS};

/// One hand-written example: what it does, then the command line.
struct Example {
    what: &'static str,
    command: &'static str,
}

/// The hand-written part of one page.
struct Page {
    /// The subcommand, or "" for livefs(8) itself.
    name: &'static str,
    /// Whether the command works on the running system (exit status 3 when it
    /// refuses by policy, the files of FILES) or only on a repository.
    system: bool,
    examples: &'static [Example],
}

const PAGES: &[Page] = &[
    Page {
        name: "",
        system: true,
        examples: &[
            Example { what: "Install a package the usual way, then use it without rebooting:", command: "rpm-ostree install httpd && livefs apply && systemctl start httpd" },
            Example { what: "See what the pending deployment would change, and whether it needs a reboot:", command: "livefs apply --dry-run" },
            Example { what: "Go back to what the system booted:", command: "livefs reset" },
        ],
    },
    Page {
        name: "status",
        system: true,
        examples: &[
            Example { what: "Show the booted, pending and live commits:", command: "livefs status" },
            Example { what: "Ask whether the pending deployment can go live (docs/schema/status.schema.json):", command: "livefs status --json | jq .strategy" },
            Example { what: "Which backend this host boots: ostree, or bootc's native composefs (its image named too):", command: "livefs status --json | jq .boot" },
        ],
    },
    Page {
        name: "apply",
        system: true,
        examples: &[
            Example { what: "Apply the pending deployment, additions only:", command: "livefs apply" },
            Example { what: "Apply an update that also changes existing files:", command: "livefs apply --allow-replacement" },
            Example { what: "Show the plan, the strategy and the restarts it would need; change nothing:", command: "livefs apply --dry-run" },
            Example { what: "Apply a commit of the system repository that is not deployed:", command: "livefs apply --target fedora/x86_64/coreos/testing-devel" },
            Example { what: "Apply from automation, idempotently (exit status 0 and \"changed\": false when there is nothing to do):", command: "livefs apply --allow-replacement --json > result.json" },
            Example { what: "Apply, restart, and roll back at once unless the web server stays up 30 s and answers (exit status 5 when rolled back):", command: "livefs apply --allow-replacement --restart --settle 30 --check 'curl -fsS http://localhost/health'" },
            Example { what: "A health check of your own, run after every live update (and by greenboot at boot):", command: "install -D -m 755 my-probe.sh /etc/greenboot/check/required.d/50-my-probe.sh" },
            Example { what: "Keep the update only if a new SSH connection confirms it within 2 minutes (deploy-rs's \"magic rollback\"):", command: "livefs apply --allow-replacement --restart --confirm-within 120 && ssh host livefs confirm" },
        ],
    },
    Page {
        name: "reset",
        system: true,
        examples: &[
            Example { what: "Show what a reset would change:", command: "livefs reset --dry-run" },
            Example { what: "Bring /usr and /etc back to the booted commit:", command: "livefs reset" },
        ],
    },
    Page {
        name: "rollback",
        system: true,
        examples: &[
            Example { what: "Undo the last apply: back to the previous live commit, or to the booted one:", command: "livefs rollback --restart" },
            Example { what: "What a rollback would put back, changing nothing:", command: "livefs rollback --dry-run" },
            Example { what: "When and why the last rollback happened:", command: "livefs status && journalctl MESSAGE_ID=9d32385a68d040ea8f3cfcbcb494ecd9" },
        ],
    },
    Page {
        name: "confirm",
        system: true,
        examples: &[
            Example { what: "Keep the update an apply --confirm-within applied, from a new SSH connection:", command: "ssh root@host livefs confirm" },
            Example { what: "The deadline and its timer:", command: "livefs status && systemctl list-timers 'livefs-confirm-*'" },
        ],
    },
    Page {
        name: "restart",
        system: true,
        examples: &[
            Example { what: "Apply the pending deployment and restart what it changed, in one go:", command: "livefs apply --allow-replacement --restart" },
            Example { what: "List what would be stopped, reloaded, restarted and started:", command: "livefs restart --dry-run" },
            Example { what: "Restart what an earlier apply left running old code:", command: "livefs restart" },
            Example { what: "Keep a unit from being restarted by a live update (a drop-in):", command: "mkdir -p /etc/systemd/system/postgresql.service.d && printf '[Unit]\\nX-RestartIfChanged=false\\n' > /etc/systemd/system/postgresql.service.d/livefs.conf" },
        ],
    },
    Page {
        name: "auto",
        system: true,
        examples: &[
            Example { what: "Take every deployment live as it is written, when it can go live whole without replacing files (the default policy):", command: "systemctl enable --now livefs-auto.path" },
            Example { what: "Also take updates that replace files, and those that need a soft reboot (the live part; the reboot sentinel names the rest):", command: "mkdir -p /etc/livefs/auto.conf.d && printf '[Auto]\\nAllowReplacement=yes\\nMaxStrategy=soft-reboot\\n' > /etc/livefs/auto.conf.d/50-fleet.conf" },
            Example { what: "What an automatic run would do now, changing nothing:", command: "livefs auto --dry-run" },
            Example { what: "The last automatic run, and the history of this host:", command: "livefs status && journalctl -o verbose SYSLOG_IDENTIFIER=livefs" },
            Example { what: "Every update that went live:", command: "journalctl MESSAGE_ID=9156c2b8b135400a9b1a466e48a2a1ca" },
        ],
    },
    Page {
        name: "diff",
        system: false,
        examples: &[
            Example { what: "List what the pending deployment changes, as ostree diff does:", command: "livefs diff \"$(livefs status --json | jq -r .booted.checksum)\" \"$(livefs status --json | jq -r .pending.checksum)\"" },
            Example { what: "A one-line summary between a ref and its parent:", command: "livefs diff --stat --repo /srv/repo os/x86_64/stable^ os/x86_64/stable" },
        ],
    },
    Page {
        name: "apply-tree",
        system: false,
        examples: &[
            Example { what: "Turn a checkout of commit A's /usr into commit B's, in place:", command: "livefs apply-tree --repo /srv/repo --from A --to B --subpath /usr /mnt/usr" },
            Example { what: "Show the plan only:", command: "livefs apply-tree --repo /srv/repo --from A --to B --dry-run /mnt/tree" },
        ],
    },
];

/// FILES: every path livefs reads or writes on a running system.
const FILES: &[(&str, &str)] = &[
    ("/run/livefs/", "The live state: state.json (booted, applying A to B, live at B, or rolling back), the journal of /etc since boot (etc-journal/, what a reset puts back) and of the last apply (etc-undo/, what a rollback puts back), the way back of the last apply (way-back.json: the commit and layer before it, what it did to units, the confirmation it awaits) and the last rollback (rollback.json), the records of replaced paths, unit files and layers, the triggers still to run, and the last activation's progress (activation.json). It is in /run, so a reboot clears it along with the live changes."),
    ("/sysroot/ostree/deploy/OS/backing/DEPLOYMENT/livefs/usr.COMMIT.NONCE/", "A layer: the difference between the booted /usr and the target's, as hard links to the repository's objects and whiteouts. The read-only overlay on /usr stacks it over the deployment's /usr. Layers no mount uses are removed by the next apply or reset, but the previous live commit's, kept for the way back of the last apply."),
    ("/etc/greenboot/check/required.d/, wanted.d/, green.d/, red.d/ (and /usr/lib/greenboot/...)", "greenboot's health checks and scripts, which apply runs after a live update as greenboot runs them at boot: every required check must exit 0 (else the update is rolled back), a failed wanted check is a warning; green.d runs after a healthy update, red.d after a rollback. One set by file name, /etc winning; DISABLED_HEALTHCHECKS of /etc/greenboot/greenboot.conf skips checks by name."),
    ("/sysroot/ostree/repo/refs/heads/livefs/", "The refs livefs/live and livefs/inprogress, which keep the live and the in-progress commits from being pruned."),
    ("/etc/livefs/restart.conf, /etc/livefs/restart.conf.d/*.conf", "Read: units never restarted, stopped or reloaded on their own, added to the built-in list (the message bus, logind, journald, gettys, user managers, display managers, NetworkManager, wpa_supplicant, sshd) with LeaveAlone=UNIT... in a [Restart] section; an empty LeaveAlone= empties the list so far. DaemonReexec=yes: --restart re-executes a changed systemd manager (as --daemon-reexec asks)."),
    ("/etc/livefs/auto.conf, /etc/livefs/auto.conf.d/*.conf", "Read by livefs auto: the policy of automatic runs, in an [Auto] section: MaxStrategy=live|soft-reboot|reboot (default live), AllowReplacement= (default no), Restart= (default yes), Check= (default yes: the health checks after the apply), Rollback= (default yes: an update that fails them is rolled back, and not applied again this boot), Settle= (seconds, default 10). A value that does not parse gives its key the default, with a warning naming the file and line."),
    ("/usr/lib/systemd/system/livefs-auto.path, livefs-auto.timer, livefs-auto.service", "The automatic runs: the path unit starts the service when /run/ostree/staged-deployment or /boot changes (a staged or an immediate deployment), and brings along the hourly timer; `systemctl enable --now livefs-auto.path` turns them on. The service runs livefs auto; a refused or failed run leaves it failed."),
    ("/run/livefs/auto.json", "The last automatic run: when, which deployment, how it ended, under which policy, what it left for the reboot (livefs status shows it)."),
    ("/run/reboot-required, /run/reboot-required.pkgs", "Written while something only a (soft) reboot delivers is left: by the live state, or a deployment an automatic run did not take live (one livefs: REASON line each); removed when moot, only if livefs wrote them."),
    ("/run/systemd/journal/socket", "Where the journal entries go (nothing is sent where it does not exist)."),
    ("/run/ostree-booted", "Read: how the system booted (composefs, read-only /sysroot, transient /etc), and which deployment is booted."),
    ("/run/ostree/staged-deployment", "Read: the deployment staged for the next boot, the default target when it is pending."),
    ("/boot/loader/entries/", "Read: the kernel arguments of the booted and the pending deployment."),
];

/// FILES of the commands that work on a repository only.
const REPO_FILES: &[(&str, &str)] =
    &[("/sysroot/ostree/repo/", "The repository read when --repo is not given (SYSROOT/ostree/repo).")];

const SEE_ALSO: &[(&str, &str)] = &[
    ("ostree", "1"),
    ("ostree-admin-unlock", "1"),
    ("rpm-ostree", "1"),
    ("bootc", "8"),
    ("systemctl", "1"),
    ("systemd-tmpfiles", "8"),
    ("systemd-sysusers", "8"),
];

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os().nth(1).context("usage: package-assets OUTDIR")?;
    let out = Path::new(&out);
    let mut cmd = livefs::cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = out.join("man8");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    for page in PAGES {
        let sub = if page.name.is_empty() {
            cmd.clone()
        } else {
            cmd.find_subcommand(page.name).with_context(|| format!("no subcommand {}", page.name))?.clone()
        };
        let title = if page.name.is_empty() { "livefs".to_string() } else { format!("livefs-{}", page.name) };
        let path = man.join(format!("{title}.8"));
        let mut f = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        render(&mut f, sub, &title, page, &cmd)?;
    }
    let missing: Vec<_> =
        cmd.get_subcommands().map(|s| s.get_name()).filter(|n| !PAGES.iter().any(|p| p.name == *n)).collect();
    anyhow::ensure!(missing.is_empty(), "no man page written for: {}", missing.join(", "));

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions).with_context(|| format!("cannot create {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "livefs", &completions)
            .with_context(|| format!("cannot write the {shell} completion"))?;
    }
    Ok(())
}

/// JOURNAL: the entries a change, a refusal or a failure logs.
fn journal(r: &mut Roff) {
    r.control("SH", ["JOURNAL"]);
    r.text([roman("Every change to the running system, and every refusal or failure of a command that would have made one, is logged as one structured journal entry (SYSLOG_IDENTIFIER=livefs; dry runs and runs that change nothing log nothing). Each event has its MESSAGE_ID, so that "), bold("journalctl MESSAGE_ID=ID"), roman(" lists a host's history:")]);
    for (_, name, id, priority, what) in EVENTS {
        r.control("TP", []).text([bold(*name), roman(format!(" {id} (priority {priority})"))]).text([roman(*what)]);
    }
    r.control("PP", []).text([roman("Fields, besides MESSAGE and PRIORITY:")]);
    for (name, what) in FIELDS {
        r.control("TP", []).text([bold(*name)]).text([roman(*what)]);
    }
}

fn render(w: &mut impl Write, sub: clap::Command, title: &str, page: &Page, top: &clap::Command) -> anyhow::Result<()> {
    let version = top.get_version().unwrap_or_default();
    let man = clap_mangen::Man::new(sub.clone())
        .title(title.to_uppercase())
        .section("8")
        .source(format!("livefs {version}"))
        .manual("livefs");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if sub.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    let changes = page.system && !matches!(page.name, "status" | "restart" | "confirm");
    let acts = matches!(page.name, "" | "apply" | "reset" | "restart" | "auto" | "rollback" | "confirm");
    let ok = if page.name == "auto" {
        "Done: the pending deployment went live, there was nothing to do, or it was left for the next reboot because it needs more than MaxStrategy= allows (the reboot sentinel says why)."
    } else if changes {
        "Done. Nothing to do is done too: applying what is already live, or with no deployment pending, changes nothing and exits 0 (\"changed\": false in JSON), so automation can run it repeatedly."
    } else {
        "Done."
    };
    let statuses = vec![
        (exit::OK, ok),
        (
            exit::ERROR,
            if acts {
                "An error: bad input, a missing or corrupt object, a failed system call. What could be changed before the error is named in the message; the live state stays one that apply and reset can finish. Also: a unit failed to stop, reload, restart or start (--restart, livefs restart); it is reported with its status, and the transition itself stands."
            } else {
                "An error: bad input, a missing or corrupt object, a failed system call."
            },
        ),
        (exit::USAGE, "The command line is wrong."),
    ];
    let mut statuses: Vec<(u8, String)> = statuses.into_iter().map(|(c, w)| (c, w.to_string())).collect();
    if acts {
        let auto = if page.name == "auto" {
            "For livefs auto: an update the policy refuses (it replaces or removes files of /usr and AllowReplacement=no), left for the next reboot; its unit fails. "
        } else {
            ""
        };
        statuses.push((exit::POLICY, format!("{auto}Refused, nothing changed: by policy (the update replaces or removes existing files without --allow-replacement, or needs more than --max-strategy accepts; an interrupted transition must be finished first), or because livefs cannot or must not act on this host (not OSTree-booted; /usr is someone else's: an ostree hotfix, rpm-ostree's live state, a foreign overlay; a mount below /usr cannot be carried into the new tree), or run by another user than root.")));
    }
    if matches!(page.name, "" | "apply" | "auto" | "confirm") {
        let what = match page.name {
            "confirm" => "Too late: the update was rolled back already, for want of this confirmation.",
            _ => "The update was applied, failed its health checks (a unit that did not stay up, a required check), and was rolled back at once: /usr, /etc and the units are as before it (with --confirm-within: also when no livefs confirm came in time). Its report says what failed, what was undone and how long the way back took.",
        };
        statuses.push((exit::ROLLED_BACK, what.to_string()));
    }
    if page.system {
        statuses.push((
            exit::BUSY,
            "Another livefs held the lock for longer than --lock-timeout: nothing changed, try again.".to_string(),
        ));
    }
    statuses.sort_by_key(|(code, _)| *code);
    for (code, what) in statuses {
        r.control("TP", []).text([bold(code.to_string())]).text([roman(what)]);
    }
    r.control("PP", []).text([roman("With "), bold("--json"), roman(", an error is a JSON object {\"error\": MESSAGE, \"kind\": KIND} on standard output, with the exit status of its kind:")]);
    for (_, name, code, what) in KINDS {
        r.control("TP", []).text([bold(*name), roman(format!(" ({code})"))]).text([roman(*what)]);
    }

    if acts {
        journal(&mut r);
    }

    r.control("SH", ["FILES"]);
    let files = if page.system { FILES } else { REPO_FILES };
    for (path, what) in files {
        r.control("TP", []).text([italic(*path)]).text([roman(*what)]);
    }

    r.control("SH", ["EXAMPLES"]);
    for e in page.examples {
        r.control("PP", []).text([roman(e.what)]);
        r.control("RS", ["4"]).control("nf", []).text([bold(e.command)]).control("fi", []).control("RE", []);
    }

    r.control("SH", ["SEE ALSO"]);
    let mut refs: Vec<(String, String)> = Vec::new();
    if page.name.is_empty() {
        refs.extend(PAGES.iter().skip(1).map(|p| (format!("livefs-{}", p.name), "8".to_string())));
    } else {
        refs.push(("livefs".into(), "8".into()));
    }
    refs.extend(SEE_ALSO.iter().map(|(n, s)| (n.to_string(), s.to_string())));
    let mut inlines = Vec::new();
    for (i, (name, section)) in refs.iter().enumerate() {
        let sep = if i + 1 == refs.len() { "" } else { ", " };
        inlines.push(bold(name.as_str()));
        inlines.push(roman(format!("({section}){sep}")));
    }
    r.text(inlines);
    r.control("SH", ["VERSION"]).text([roman(format!("livefs {version}"))]);
    r.to_writer(w)?;
    Ok(())
}
