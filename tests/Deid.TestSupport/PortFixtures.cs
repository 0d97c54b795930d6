namespace Deid.TestSupport;

/// <summary>
/// Whole pickled modules laid out like the ID-disentanglement port's published E_attr and M, made at test time by
/// scripts/make_port_fixtures.py with Debian's python3-torch (the full-size E_attr is ~95 MB, too big to commit).
/// </summary>
public static class PortFixtures
{
    public const string Python = "/usr/bin/python3";

    public static string Script => Path.Combine(TestPaths.RepoRoot, "scripts", "make_port_fixtures.py");

    /// <summary>
    /// Writes the fixtures of the given groups (attr, mapper, small; all when none) into <paramref name="dir"/>. Returns
    /// why a test must skip when Debian's python3-torch/torchvision are not installed, else null; any other failure throws.
    /// </summary>
    public static string? TryMake(string dir, params string[] only)
    {
        if (!File.Exists(Python)) return $"{Python} is missing (install python3-torch python3-torchvision, as `make setup` does)";
        string[] args = only.Length > 0 ? [Script, dir, "--only", string.Join(",", only)] : [Script, dir];
        var r = Tool.Run(Python, args);
        if (r.Code == 0) return null;
        if (r.StdErr.Contains("No module named 'torch"))
            return $"Debian's python3-torch / python3-torchvision are not installed ({LastLine(r.StdErr)}); `make setup` installs them";
        throw new InvalidOperationException($"{Script} failed ({r.Code}): {r.StdErr}");
    }

    private static string LastLine(string s) =>
        s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
}
