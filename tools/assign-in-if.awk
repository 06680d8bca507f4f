# assign-in-if.awk - the "no assignments in conditions" rule of tools/check-style.sh.
#
# Prints FILE:LINE: CONDITION for every `if (...)` (and `else if`) of a C file whose
# condition assigns (=, +=, |=, ...; not ==, !=, <=, >=), as curl's checksrc does with
# ASSIGNWITHINCONDITION: `rc = f(); if (rc)` reads in the order it runs and cannot be
# mistaken for a comparison. Loops are left alone (`while ((c = getopt(...)) != -1)`
# is the idiom). Comments, string and character literals are blanked first; a
# condition may span lines. Not a C parser: it errs towards reporting.
function blank_literals(s) {
    gsub(/\\./, "", s)
    gsub(/"[^"]*"/, "\"\"", s)
    gsub(/'[^']*'/, "''", s)
    return s
}

FNR == 1 {
    in_comment = 0
    depth = 0
    cond = ""
}

{
    line = $0
    if (in_comment) {
        if (!match(line, /\*\//))
            next
        line = substr(line, RSTART + 2)
        in_comment = 0
    }
    gsub(/\/\*([^*]|\*[^\/])*\*\//, "", line)
    if (match(line, /\/\*/)) {
        line = substr(line, 1, RSTART - 1)
        in_comment = 1
    }
    sub(/\/\/.*/, "", line)
    line = blank_literals(line)
    if (depth == 0) {
        if (!match(line, /(^|[^A-Za-z0-9_#])if[ \t]*\(/))
            next
        start = FNR
        line = substr(line, RSTART + RLENGTH - 1)
        cond = ""
    }
    for (i = 1; i <= length(line); i++) {
        ch = substr(line, i, 1)
        if (ch == "(")
            depth++
        else if (ch == ")" && --depth == 0) {
            cond = cond ch
            break
        }
        cond = cond ch
    }
    if (depth > 0) {
        cond = cond " "
        next
    }
    c = cond
    gsub(/==|!=|<=|>=/, " ", c)
    if (c ~ /=/)
        printf "%s:%d: if %s\n", FILENAME, start, cond
    cond = ""
}
