//! Two livefs runs at once: the second waits for the lock and then decides from
//! what the first left — never from what it read before waiting. Afterwards the
//! mounts are exactly what the recorded state says, and `/usr` is exactly the
//! recorded commit's tree.

mod common;

use common::system::{ok, TestSystem};

/// Shell functions for the scripts below: `check ROUND` fails unless the
/// recorded state, the overlays on /usr and /usr's content agree.
fn checker(sys: &TestSystem, v2: &str) -> String {
    format!(
        r#"
        A={a}; B={b}
        overlays() {{ awk -v m="$R/usr" '$5 == m' /proc/self/mountinfo | grep -c ' livefs:' || true; }}
        check() {{
            local state n
            state=$(L status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"]["state"])')
            n=$(overlays)
            case "$state" in
                booted) [ "$n" = 0 ] || {{ echo "round $1: state booted with $n livefs overlays on /usr" >&2; return 1; }}
                        diff -r --no-dereference $R/usr $A > /dev/null || {{ echo "round $1: booted, /usr is not A" >&2; return 1; }} ;;
                live)   [ "$n" = 1 ] || {{ echo "round $1: state live with $n livefs overlays on /usr" >&2; return 1; }}
                        diff -r --no-dereference $R/usr $B > /dev/null || {{ echo "round $1: live, /usr is not B" >&2; return 1; }} ;;
                *) echo "round $1: state $state" >&2; return 1 ;;
            esac
            echo "$state" >> $OUT/outcomes
        }}
        "#,
        a = sys.usr_of(&sys.booted).display(),
        b = sys.usr_of(v2).display(),
    )
}

/// The three pairs started together, many rounds: apply+apply and apply+reset
/// from Booted, reset+apply from Live. Both runs of a pair succeed (the loser
/// waits), and the result is always one the state tells truly.
#[test]
fn runs_started_together_leave_a_state_that_tells_the_truth() {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run(&format!(
        r#"
        {checker}
        # Starts `L $1` and `L $2` together; both must succeed (the loser waits).
        together() {{
            L $1 > /dev/null 2> $OUT/e1 & local p1=$!
            L $2 > /dev/null 2> $OUT/e2 & local p2=$!
            wait $p1 || {{ cat $OUT/e1 >&2; return 1; }}
            wait $p2 || {{ cat $OUT/e2 >&2; return 1; }}
        }}
        for round in $(seq 1 12); do
            # apply + apply from Booted: one applies, the other finds B live.
            together apply apply
            check "apply+apply $round"
            [ "$(tail -n1 $OUT/outcomes)" = live ] || {{ echo "apply+apply did not end live" >&2; exit 1; }}
            L reset > /dev/null
            # apply + reset from Booted: whichever goes second acts on what the first left.
            together apply reset
            check "apply+reset $round"
            L reset > /dev/null
            # reset + apply from Live.
            L apply > /dev/null
            together reset apply
            check "reset+apply $round"
            L reset > /dev/null
        done
        "#,
        checker = checker(&sys, &v2)
    ));
    ok(&out);
    let outcomes = std::fs::read_to_string(sys.out.join("outcomes")).unwrap();
    assert_eq!(outcomes.lines().count(), 36, "{outcomes}");
}

/// One overlap made certain: the first apply is stopped inside its mount step
/// (holding the lock, its layer built, /usr not yet switched) while a second
/// apply and then a reset start; each waits, then acts on what the first left:
/// the second apply finds B live (nothing to do), the reset resets it.
#[test]
fn a_run_that_waited_acts_on_what_the_first_left() {
    let (sys, v2) = TestSystem::with_additions();
    let out = sys.run(&format!(
        r#"
        {checker}
        stopped() {{ [ "$(awk '{{print $3}}' /proc/$1/stat 2> /dev/null)" = T ]; }}
        # livefs itself in the background ($! its pid, which stops), not a subshell running L.
        LIVEFS_STOP_AT=switch $LIVEFS --root $R --sysroot $S apply --json > $OUT/first.json & first=$!
        for i in $(seq 1 200); do stopped $first && break; sleep 0.05; done
        stopped $first || {{ echo "the first apply never reached its mount step" >&2; exit 1; }}
        L apply --json > $OUT/second.json 2> $OUT/second.err & second=$!
        sleep 0.5
        kill -0 $second || {{ echo "the second apply did not wait for the lock" >&2; exit 1; }}
        kill -CONT $first
        wait $first; wait $second
        check first-then-second
        # And a reset that waited for an apply resets what that apply did.
        L reset > /dev/null
        LIVEFS_STOP_AT=switch $LIVEFS --root $R --sysroot $S apply > /dev/null & first=$!
        for i in $(seq 1 200); do stopped $first && break; sleep 0.05; done
        L reset --json > $OUT/reset.json & second=$!
        sleep 0.5
        kill -CONT $first
        wait $first; wait $second
        check apply-then-reset
        "#,
        checker = checker(&sys, &v2)
    ));
    ok(&out);
    let json = |name: &str| common::system::read_json(&sys.out.join(name));
    let (first, second) = (json("first.json"), json("second.json"));
    assert_eq!(first["changed"], true, "{first}");
    assert_eq!(first["state"]["state"], "live");
    assert_eq!(second["changed"], false, "the second apply found B live: {second}");
    assert_eq!(second["state"]["state"], "live");
    assert_eq!(second["state"]["commit"], v2.as_str());
    let reset = json("reset.json");
    assert_eq!(reset["changed"], true, "the reset undid the apply it waited for: {reset}");
    assert_eq!(reset["state"]["state"], "booted");
    assert_eq!(std::fs::read_to_string(sys.out.join("outcomes")).unwrap(), "live\nbooted\n");
}
