using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Deid.Cli.Batch;

public sealed record SlurmRequest
{
    public string? Partition { get; init; }
    public string? Time { get; init; }
    public int Cpus { get; init; } = 2;
    public int Gpus { get; init; }
    /// <summary>The array's %K throttle: at most K tasks at once (0: no limit).</summary>
    public int ArrayMax { get; init; }
    /// <summary>Clips per array task.</summary>
    public int ClipsPerTask { get; init; } = 1;
    public string JobName { get; init; } = "deid-batch";
}

/// <summary>
/// The Slurm path: a job array whose task i runs <c>deid batch --task-index i --plan P</c> against the batch's
/// manifest. The plan (which clips each task runs) is written to the manifest before submission, so no two tasks
/// touch one clip and each writes its own status lines.
/// </summary>
public static class Slurm
{
    public static bool OnPath(string tool) => FindOnPath(tool) != null;

    public static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>How to start this same deid from a job: the apphost beside the assembly, else <c>dotnet deid.dll</c>.</summary>
    public static string DeidCommand()
    {
        var dll = typeof(Slurm).Assembly.Location;
        var apphost = Path.Combine(Path.GetDirectoryName(dll)!, "deid");
        if (File.Exists(apphost)) return Quote(apphost);
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        return $"{Quote(dotnet)} {Quote(dll)}";
    }

    public static string Quote(string s) => s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || "/._-+=:,@%".Contains(c)) ? s : "'" + s.Replace("'", "'\\''") + "'";

    public static string Script(SlurmRequest req, string plan, int tasks, int clips, string manifest, string outDir, string device, string logDir)
    {
        var sb = new StringBuilder();
        sb.Append("#!/bin/bash\n");
        sb.Append($"# deid batch job array, written by `deid batch --slurm` on {DateTimeOffset.UtcNow:u}: {clips} clip(s) in {tasks} task(s), plan {plan}.\n");
        sb.Append($"# Submit: sbatch THIS_FILE    Follow: deid batch --status {Quote(outDir)}\n");
        sb.Append($"# Each task i runs the clips the manifest's plan {plan} gives task i, and appends their status lines to the manifest.\n");
        sb.Append($"#SBATCH --job-name={req.JobName}\n");
        sb.Append($"#SBATCH --array=0-{tasks - 1}{(req.ArrayMax > 0 ? "%" + req.ArrayMax.ToString(CultureInfo.InvariantCulture) : "")}\n");
        sb.Append($"#SBATCH --cpus-per-task={req.Cpus}\n");
        if (req.Gpus > 0) sb.Append($"#SBATCH --gres=gpu:{req.Gpus}\n");
        if (req.Partition != null) sb.Append($"#SBATCH --partition={req.Partition}\n");
        if (req.Time != null) sb.Append($"#SBATCH --time={req.Time}\n");
        sb.Append($"#SBATCH --output={logDir}/%A_%a.out\n");
        sb.Append("set -euo pipefail\n");
        // The job sees what this shell saw: ffmpeg on PATH, the model store, the .NET runtime.
        foreach (var name in new[] { "PATH", "DEID_MODELS", "DOTNET_ROOT", "DEID_FFMPEG", "DEID_FFPROBE", "LD_LIBRARY_PATH" })
            if (Environment.GetEnvironmentVariable(name) is { Length: > 0 } v) sb.Append($"export {name}={Quote(v)}\n");
        if (Environment.GetEnvironmentVariable("DEID_MODELS") is not { Length: > 0 })
            sb.Append($"export DEID_MODELS={Quote(new Deid.Models.ModelStore(null).Root)}\n");
        sb.Append($"cd {Quote(Directory.GetCurrentDirectory())}\n");
        sb.Append($"exec {DeidCommand()} batch --task-index \"$SLURM_ARRAY_TASK_ID\" --plan {plan} --manifest {Quote(manifest)} -o {Quote(outDir)} --device {Quote(device)}\n");
        return sb.ToString();
    }

    /// <summary>Runs <c>sbatch --parsable SCRIPT</c>; the job id, or the refusal in sbatch's own words.</summary>
    public static string Submit(string script)
    {
        var (code, stdout, stderr) = Run("sbatch", "--parsable", script);
        if (code != 0)
        {
            var why = string.Join("; ", stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(l => l.Replace("sbatch: error: ", "")));
            throw new BatchException($"Slurm refused the job: {(why.Length > 0 ? why : $"sbatch exited with {code}")}");
        }
        var id = stdout.Trim().Split('\n').Last().Split(';')[0].Trim();
        if (id.Length == 0) throw new BatchException("sbatch printed no job id");
        return id;
    }

    /// <summary>Array task states of a job from squeue (null: squeue not there or it failed), e.g. {RUNNING: 2, PENDING: 1}.</summary>
    public static Dictionary<string, int>? QueueStates(string jobId)
    {
        if (!OnPath("squeue")) return null;
        var (code, stdout, _) = Run("squeue", "-h", "-r", "-j", jobId, "-o", "%T");
        if (code != 0) return stdout.Length == 0 ? new Dictionary<string, int>() : null; // an ended job: "Invalid job id"
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .GroupBy(s => s).ToDictionary(g => g.Key, g => g.Count());
    }

    /// <summary>sacct's task states, or why there are none (accounting is often off on small clusters).</summary>
    public static (Dictionary<string, int>? States, string? Why) AccountingStates(string jobId)
    {
        if (!OnPath("sacct")) return (null, "sacct not on PATH");
        var (code, stdout, stderr) = Run("sacct", "-n", "-P", "-X", "-j", jobId, "-o", "State");
        if (code != 0 || stderr.Contains("disabled", StringComparison.OrdinalIgnoreCase))
            return (null, "sacct: " + (stderr.Trim().Split('\n').FirstOrDefault() is { Length: > 0 } l ? l : $"exit {code}"));
        return (stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => s.Split(' ')[0]).GroupBy(s => s).ToDictionary(g => g.Key, g => g.Count()), null);
    }

    private static (int Code, string StdOut, string StdErr) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(60_000)) { try { p.Kill(); } catch (InvalidOperationException) { } throw new BatchException($"{exe} did not answer within 60 s"); }
        return (p.ExitCode, output, err.Result);
    }
}
