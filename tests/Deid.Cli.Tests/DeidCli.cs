using System.Diagnostics;

namespace Deid.Cli.Tests;

/// <summary>The built deid assembly run as a process, exactly as a user runs it, and the checks every failure shares.</summary>
public static class DeidCli
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "deid.dll");

    public static ProcessStartInfo StartInfo(IEnumerable<string> args, IReadOnlyDictionary<string, string>? env = null, bool defaultSigint = false)
    {
        Assert.True(File.Exists(Dll), $"missing {Dll}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (defaultSigint)
        {
            // A process started from a non-interactive shell's background job (CI runners, `make test &`) inherits
            // SIGINT as ignored, and .NET rightly keeps it ignored. Reset it, as a terminal would have it; and run it
            // niced, so that on a loaded machine the test watching it still gets the CPU to interrupt it in time.
            psi.FileName = "/usr/bin/python3";
            foreach (var a in new[] { "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.nice(10); os.execvp(sys.argv[1], sys.argv[1:])", "dotnet" })
                psi.ArgumentList.Add(a);
        }
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        // A developer's debug switch would turn the one-line errors under test into stack traces.
        psi.Environment.Remove("DEID_DEBUG");
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        return psi;
    }

    /// <summary>Runs deid to completion with extra environment variables; exit code and both streams.</summary>
    public static (int Code, string StdOut, string StdErr) RunDeid(IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        using var p = Process.Start(StartInfo(args, env))!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    public static (int Code, string StdOut, string StdErr) RunDeid(params string[] args) => RunDeid(null, args);

    /// <summary>A failed run's stderr: exactly one "deid: error:" line (and the exit code, when one is expected).</summary>
    public static string OneErrorLine((int Code, string StdOut, string StdErr) r, int? code = null)
    {
        if (code is int c) Assert.Equal(c, r.Code);
        else Assert.NotEqual(0, r.Code);
        var lines = r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "one line expected, got:\n" + r.StdErr);
        Assert.StartsWith("deid: error: ", lines[0]);
        return lines[0];
    }

    /// <summary>
    /// Non-zero exit, one "deid: error:" line naming any of <paramref name="anyOf"/>, and nothing written: no
    /// <paramref name="output"/>, no file with "out" in its name (a temp beside it) anywhere under <paramref name="dir"/>.
    /// </summary>
    public static void AssertFailsCleanly((int Code, string StdOut, string StdErr) r, string dir, string? output, params string[] anyOf)
    {
        var line = OneErrorLine(r);
        Assert.True(anyOf.Any(e => line.Contains(e, StringComparison.OrdinalIgnoreCase)), $"unexpected message: {line}");
        if (output != null) Assert.False(File.Exists(output), "no output file may be left behind");
        Assert.DoesNotContain(Directory.GetFiles(dir, "*", SearchOption.AllDirectories), f => Path.GetFileName(f).Contains("out", StringComparison.Ordinal));
    }
}
