"""Standard library packages and predeclared functions."""

from __future__ import annotations

from typing import Any

import pytest

from specflow.spec.cue import loads_cue


def ev(text: str) -> Any:
    return loads_cue(text, "lib.cue")


def test_list_package() -> None:
    src = """
    import "list"

    r: list.Range(0, 5, 2)
    rd: list.Range(3, 0, -1)
    rf: list.Range(0, 1, 0.25)
    mn: list.Min([3, 1, 2])
    mx: list.Max([3, 1.5, 2])
    s: list.Sum([1, 2, 3])
    sf: list.Sum([0.1, 0.2])
    p: list.Product([2, 3])
    c: list.Concat([[1], [2, 3], []])
    f: list.FlattenN([1, [2, [3, [4]]]], 2)
    ctn: list.Contains([1, 2], 2)
    nctn: list.Contains([1, 2], 5)
    srt: list.Sort([3, 1, 2], list.Ascending)
    srtd: list.Sort(["b", "a", "c"], list.Descending)
    ss: list.SortStrings(["b", "a"])
    tk: list.Take([1, 2, 3], 2)
    dr: list.Drop([1, 2, 3], 2)
    sl: list.Slice([1, 2, 3, 4], 1, 3)
    rp: list.Repeat([1, 2], 2)
    av: list.Avg([1, 2])
    """
    assert ev(src) == {
        "r": [0, 2, 4],
        "rd": [3, 2, 1],
        "rf": [0, 0.25, 0.5, 0.75],
        "mn": 1,
        "mx": 3,
        "s": 6,
        "sf": 0.3,
        "p": 6,
        "c": [1, 2, 3],
        "f": [1, 2, 3, [4]],
        "ctn": True,
        "nctn": False,
        "srt": [1, 2, 3],
        "srtd": ["c", "b", "a"],
        "ss": ["a", "b"],
        "tk": [1, 2],
        "dr": [3],
        "sl": [2, 3],
        "rp": [1, 2, 1, 2],
        "av": 1.5,
    }


def test_list_sort_with_custom_comparator() -> None:
    src = """
    import "list"
    #byLen: {x: string, y: string, less: len(x) < len(y)}
    s: list.Sort(["ccc", "a", "bb"], #byLen)
    """
    assert ev(src)["s"] == ["a", "bb", "ccc"]


def test_list_functions_on_struct_elements() -> None:
    src = """
    import "list"
    #T: {n: int, sq: n * n}
    all: list.Concat([[#T & {n: 2}], [#T & {n: 3}]])
    """
    assert ev(src) == {"all": [{"n": 2, "sq": 4}, {"n": 3, "sq": 9}]}


def test_math_package() -> None:
    src = """
    import "math"

    p: math.Pow(2, 10)
    pf: math.Pow(2, -1)
    c: math.Ceil(2.1)
    f: math.Floor(-2.1)
    r: math.Round(2.5)
    re: math.RoundToEven(2.5)
    t: math.Trunc(-2.7)
    a: math.Abs(-3)
    sq: math.Sqrt(16)
    l2: math.Log2(1024)
    l10: math.Log10(1000)
    pi: math.Pi > 3.14
    mx: math.MaxInt32
    """
    assert ev(src) == {
        "p": 1024,
        "pf": 0.5,
        "c": 3,
        "f": -3,
        "r": 3,
        "re": 2,
        "t": -2,
        "a": 3,
        "sq": 4,
        "l2": 10,
        "l10": 3,
        "pi": True,
        "mx": 2**31 - 1,
    }


def test_math_results_interpolate_as_integers_when_whole() -> None:
    src = r"""
    import "math"
    s: "\(math.Pow(2, 3))-\(math.Ceil(1.2))"
    """
    assert ev(src)["s"] == "8-2"


def test_strings_package() -> None:
    src = """
    import "strings"

    j: strings.Join(["a", "b"], "/")
    s: strings.Split("a,b,c", ",")
    r: strings.Replace("aaa", "a", "b", 2)
    ra: strings.ReplaceAll("aaa", "a", "b")
    u: strings.ToUpper("abc")
    l: strings.ToLower("ABC")
    c: strings.Contains("hello", "ell")
    hp: strings.HasPrefix("hello", "he")
    hs: strings.HasSuffix("hello", "lo")
    tp: strings.TrimPrefix("gs://b", "gs://")
    ts: strings.TrimSuffix("a.cue", ".cue")
    sp: strings.TrimSpace("  x ")
    i: strings.Index("chicken", "ken")
    rep: strings.Repeat("ab", 2)
    f: strings.Fields(" a  b ")
    cnt: strings.Count("cheese", "e")
    """
    assert ev(src) == {
        "j": "a/b",
        "s": ["a", "b", "c"],
        "r": "bba",
        "ra": "bbb",
        "u": "ABC",
        "l": "abc",
        "c": True,
        "hp": True,
        "hs": True,
        "tp": "b",
        "ts": "a",
        "sp": "x",
        "i": 4,
        "rep": "abab",
        "f": ["a", "b"],
        "cnt": 3,
    }


def test_strconv_package() -> None:
    src = """
    import "strconv"

    a: strconv.FormatInt(255, 16)
    b: strconv.Itoa(42)
    c: strconv.Atoi("17")
    d: strconv.ParseInt("-101", 2, 64)
    e: strconv.FormatBool(true)
    f: strconv.Quote("hi")
    """
    assert ev(src) == {"a": "ff", "b": "42", "c": 17, "d": -5, "e": "true", "f": '"hi"'}


def test_path_package() -> None:
    src = """
    import "path"

    j: path.Join(["gs://bucket/a", "tmp"])
    k: path.Join(["a", "", "../b", "c"])
    b: path.Base("/x/y.txt")
    d: path.Dir("/x/y.txt")
    e: path.Ext("/x/y.txt")
    """
    assert ev(src) == {"j": "gs:/bucket/a/tmp", "k": "b/c", "b": "y.txt", "d": "/x", "e": ".txt"}


def test_regexp_and_json_packages() -> None:
    src = """
    import (
        "regexp"
        "encoding/json"
    )

    m: regexp.Match("^a+$", "aaa")
    f: regexp.Find("[0-9]+", "ab123c")
    r: regexp.ReplaceAll("a(x*)b", "-axxb-", "${1}W")
    js: json.Marshal({a: 1, b: [true, null]})
    un: json.Unmarshal("{\\"k\\": [1, 2.5]}")
    """
    assert ev(src) == {
        "m": True,
        "f": "123",
        "r": "-xxW-",
        "js": '{"a":1,"b":[true,null]}',
        "un": {"k": [1, 2.5]},
    }


def test_import_alias() -> None:
    assert ev('import S "strings"\na: S.ToUpper("x")') == {"a": "X"}


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("len([1, 2, 3])", 3),
        ('len("abc")', 3),
        ("len({a: 1, b?: 2})", 1),
        ("div(-7, 2)", -4),
        ("mod(-7, 2)", 1),
        ("quo(7, -2)", -3),
        ("rem(7, -2)", 1),
    ],
)
def test_predeclared_functions(expr: str, value: Any) -> None:
    assert ev(f"a: {expr}") == {"a": value}


def test_base64_and_hex_packages() -> None:
    src = """
    import (
        "encoding/base64"
        "encoding/hex"
    )

    a: base64.Encode(null, "hi")
    b: "\\(base64.Decode(null, a))"
    c: hex.Encode("hi")
    """
    assert ev(src) == {"a": "aGk=", "b": "hi", "c": "6869"}


def test_bytes_export_as_base64() -> None:
    assert ev("a: 'hi'") == {"a": "aGk="}


def refused(text: str) -> str:
    from specflow.spec.errors import SpecError

    with pytest.raises(SpecError) as info:
        ev(text)
    return str(info.value)


def test_net_package() -> None:
    src = """
    import "net"

    a: net.SplitHostPort("[::%lo0]:80")
    b: net.JoinHostPort([192, 30, 4, 2], 80)
    c: net.JoinHostPort("2001:db8::1", "80")
    d: net.ToIP4("127.0.0.1")
    e: len(net.ToIP16("127.0.0.1"))
    f: net.IPString([10, 0, 0, 1])
    g: net.IPv4 & "1.2.3.4"
    h: net.FQDN & "foo.bar."
    i: net.LoopbackIP("::1")
    j: net.IP("2001:db8::1")
    k: net.IPv4("2001:db8::1")
    l: net.FQDN("under_score.example.com.")
    m: net.MulticastIP("ff02::1")
    n: net.ToIP4(*"4.4.4.4" | "8.8.8.8")
    """
    assert ev(src) == {
        "a": ["::%lo0", "80"],
        "b": "192.30.4.2:80",
        "c": "[2001:db8::1]:80",
        "d": [127, 0, 0, 1],
        "e": 16,
        "f": "10.0.0.1",
        "g": "1.2.3.4",
        "h": "foo.bar.",
        "i": True,
        "j": True,
        "k": False,
        "l": False,
        "m": True,
        "n": [4, 4, 4, 4],
    }
    assert refused('import "net"\nx: 123 & net.IP').startswith("x: invalid value 123")
    assert refused('import "net"\nx: net.IPv4 & "23.23.23.2333"').startswith("x: invalid value")
    assert "x: " in refused('import "net"\nx: net.ToIP4(1 | 2)')
    assert "too many colons" in refused('import "net"\nx: net.SplitHostPort("a:b:c")')
    # only what cue v0.4 has
    assert "undefined: net.IPCIDR" in refused('import "net"\nx: net.IPCIDR("10.0.0.0/8")')


def test_tabwriter_aligns_columns() -> None:
    src = """
    import "text/tabwriter"

    t1: tabwriter.Write("a\\tb\\tc\\naaa\\tbb\\tvv")
    t2: tabwriter.Write(["a\\tbbb\\tc", "aa\\tb\\tccc", "x", "p\\tq"])
    """
    assert ev(src) == {
        "t1": "a   b  c\naaa bb vv",
        "t2": "a  bbb c\naa b   ccc\nx\np q\n",
    }


def test_text_template_execute() -> None:
    src = """
    import "text/template"

    a: template.Execute("{{.}}-{{.}}", "foo")
    b: template.Execute("{{range $k, $v := .m}}{{$k}}={{$v}};{{end}}", {m: {y: "z", x: 1}})
    c: template.Execute("{{if .b}}yes{{else if .c}}c{{else}}no{{end}}", {b: false, c: true})
    d: template.Execute("{{.n | printf \\"%03d\\"}} {{len .l}} {{index .l 1}}", {n: 7, l: [1, 2, 3]})
    e: template.Execute("{{- .a -}} {{ .b }} {{.missing}}", {a: 1.5, b: null})
    f: template.Execute("{{with .s}}[{{.}}]{{end}}{{range .e}}x{{else}}empty{{end}}", {s: "v", e: []})
    g: template.HTMLEscape("<a href='x'>&</a>")
    x: {s: "myname", out: template.Execute("{{.s}}", {"s": s})}
    """
    assert ev(src) == {
        "a": "foo-foo",
        "b": "x=1;y=z;",
        "c": "c",
        "d": "007 3 2",
        "e": "1.5<nil> <no value>",
        "f": "[v]empty",
        "g": "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;",
        "x": {"s": "myname", "out": "myname"},
    }
    assert "template.Execute" in refused('import "text/template"\nx: template.Execute("{{end}}", 1)')
    assert "x.out" in refused(
        'import "text/template"\nx: {s: string, out: template.Execute("{{.s}}", {"s": s})}'
    )


def test_html_csv_and_hmac_packages() -> None:
    src = """
    import (
        "html"
        "encoding/csv"
        "crypto/hmac"
        "encoding/hex"
    )
    a: html.Escape("<a href=\\"x\\">&'</a>")
    b: html.Unescape("&lt;b&gt;&amp;&#39;")
    c: csv.Encode([["a", "b c", "d,e"], [1, true, "x\\"y"]])
    d: csv.Decode("a,b\\n\\"c,d\\",e\\n")
    e: hex.Encode(hmac.Sign(hmac.SHA256, "key", "The quick brown fox jumps over the lazy dog"))
    """
    assert ev(src) == {
        "a": "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;",
        "b": "<b>&'",
        "c": 'a,b c,"d,e"\n1,true,"x""y"\n',
        "d": [["a", "b"], ["c,d", "e"]],
        "e": "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    }
    assert "unsupported hash" in refused('import "crypto/hmac"\nx: hmac.Sign("X", "k", "d")')
    assert "wrong number of fields" in refused('import "encoding/csv"\nx: csv.Decode("a,b\\nc\\n")')
