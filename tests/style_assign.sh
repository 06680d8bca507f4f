#!/bin/sh
# style_assign.sh - tools/assign-in-if.awk, the check-style rule "no assignments in
# if conditions", finds what it must and nothing else: every kind of assignment in an
# if or else-if condition, on one line or several; never a comparison, a loop, or an
# '=' inside a string, a character literal or a comment.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
W="$CLIPMOD_WORK/style_assign"
mkdir -p "$W"
cat >"$W/bad.c" <<'C'
void f(void)
{
    if ((rc = g()))                       /* 3 */
        return;
    if (!(p = malloc(1)))                 /* 5 */
        return;
    if (a && (b = h(a)) >= 0)             /* 7 */
        return;
    else if ((n += 2) > 3)                /* 9 */
        return;
    if (x == 1 ||                         /* 11 */
        (y |= 4))
        return;
    if ((hi = hexval(s[1])) >= 0 && (lo = hexval(s[2])) >= 0) /* 14 */
        return;
}
C
cat >"$W/good.c" <<'C'
void f(void)
{
    if (rc == 0 && a != b && c <= d && e >= f)
        return;
    if (!strcmp(s, "a=b") || c == '=')
        return;
    if (x) /* y = 1 would be wrong here */
        return;
    while ((c = getopt(argc, argv, "a")) != -1)
        ;
    for (i = 0; (j = i) < 3; i++)
        ;
    if (n > 0 &&
        /* a = b */
        n < 4)
        return;
    int verify = 1; /* a word ending in "if" before a ( is no if: */ verify = notif(x = 1);
}
C
awk -f "$top_srcdir/tools/assign-in-if.awk" "$W/bad.c" >"$W/bad.out"
lines=$(cut -d: -f2 "$W/bad.out" | tr '\n' ' ')
[ "$lines" = "3 5 7 9 11 14 " ] || fail "bad.c: expected lines 3 5 7 9 11 14, got '$lines': $(cat "$W/bad.out")"
awk -f "$top_srcdir/tools/assign-in-if.awk" "$W/good.c" >"$W/good.out"
[ ! -s "$W/good.out" ] || fail "good.c: reported $(cat "$W/good.out")"
# The tree itself is clean (check-style runs the same rule over every C source).
awk -f "$top_srcdir/tools/assign-in-if.awk" $(cd "$top_srcdir" && find src include plugins \
    tests/unit tests/fuzz tests/tools bench -name '*.[ch]' | sed "s|^|$top_srcdir/|") >"$W/tree.out"
[ ! -s "$W/tree.out" ] || fail "assignments in if conditions: $(head -5 "$W/tree.out")"
echo "PASS: 6 of 6 assignments found, no false report, the tree is clean"
