using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary>
/// A one-node Slurm cluster on this machine, for the batch integration test: a munge key and munged on a private
/// socket, a slurm.conf on localhost (proctrack/linuxproc, task/none, no accounting, select/cons_tres), slurmctld and
/// slurmd started as root without systemd, all state in a temp folder; everything is stopped on dispose.
/// <see cref="SkipReason"/> says why it could not be started.
/// </summary>
public sealed class SlurmCluster : IDisposable
{
    private readonly string _dir;
    public string? SkipReason { get; }
    public string Conf => Path.Combine(_dir, "slurm.conf");
    public Dictionary<string, string> Env => new() { ["SLURM_CONF"] = Conf };

    public SlurmCluster()
    {
        _dir = Directory.CreateTempSubdirectory("deid-slurm-").FullName;
        try { SkipReason = Start(); }
        catch (Exception e) { SkipReason = $"Slurm could not be started: {e.Message}"; }
        if (SkipReason != null) Stop();
    }

    private static string Sbin(string name) =>
        new[] { "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin" }.Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists) ?? name;

    private string? Start()
    {
        if (!OperatingSystem.IsLinux()) return "Slurm test needs Linux";
        if (Environment.UserName != "root" && Tool.Run("id", "-u").StdOut.Trim() != "0")
            return "the single-node Slurm cluster is started as root (slurmd must run as root); this test runs as " + Environment.UserName;
        foreach (var tool in new[] { "munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo" })
            if (!File.Exists(Sbin(tool))) return $"{tool} is not installed (Debian packages slurm-wlm and munge; `make setup` installs them)";

        File.SetUnixFileMode(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        foreach (var d in new[] { "state", "spool", "log" }) Directory.CreateDirectory(Path.Combine(_dir, d));
        var key = Path.Combine(_dir, "munge.key");
        File.WriteAllBytes(key, System.Security.Cryptography.RandomNumberGenerator.GetBytes(1024));
        File.SetUnixFileMode(key, UnixFileMode.UserRead);
        var sock = Path.Combine(_dir, "munge.sock");
        var munge = Tool.Run(Sbin("munged"), "--force", $"--socket={sock}", $"--key-file={key}", $"--log-file={_dir}/log/munged.log",
            $"--pid-file={_dir}/munged.pid", $"--seed-file={_dir}/munged.seed");
        if (munge.Code != 0) return $"munged did not start: {munge.StdErr.Trim()}";

        var node = Tool.Run("hostname", "-s").StdOut.Trim();
        if (node.Length == 0) node = "localhost";
        var cpus = Environment.ProcessorCount;
        File.WriteAllText(Conf, $"""
            ClusterName=deidtest
            SlurmctldHost={node}(127.0.0.1)
            SlurmctldPort={FreePort()}
            SlurmdPort={FreePort()}
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={sock}
            SlurmUser=root
            SlurmdUser=root
            StateSaveLocation={_dir}/state
            SlurmdSpoolDir={_dir}/spool
            SlurmctldPidFile={_dir}/slurmctld.pid
            SlurmdPidFile={_dir}/slurmd.pid
            SlurmctldLogFile={_dir}/log/slurmctld.log
            SlurmdLogFile={_dir}/log/slurmd.log
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SelectType=select/cons_tres
            SelectTypeParameters=CR_CPU
            SchedulerType=sched/backfill
            JobAcctGatherType=jobacct_gather/none
            AccountingStorageType=accounting_storage/none
            MpiDefault=none
            ReturnToService=2
            SlurmdParameters=config_overrides
            NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
            PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP

            """);
        var ctld = Run(Sbin("slurmctld"), "-f", Conf);
        if (ctld.Code != 0) return $"slurmctld did not start: {ctld.StdErr.Trim()} {Log("slurmctld.log")}";
        var slurmd = Run(Sbin("slurmd"), "-f", Conf);
        if (slurmd.Code != 0) return $"slurmd did not start: {slurmd.StdErr.Trim()} {Log("slurmd.log")}";
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            var s = Run(Sbin("sinfo"), "-h", "-o", "%T");
            if (s.Code == 0 && s.StdOut.Trim() == "idle") return null;
            Thread.Sleep(300);
        }
        return $"the Slurm node did not become idle within 60 s: {Run(Sbin("sinfo"), "-h", "-o", "%T %E").StdOut.Trim()} {Log("slurmd.log")}";
    }

    private string Log(string name)
    {
        var p = Path.Combine(_dir, "log", name);
        return File.Exists(p) ? "(" + string.Join(" | ", File.ReadLines(p).TakeLast(3)) + ")" : "";
    }

    /// <summary>A Slurm client command against this cluster.</summary>
    public (int Code, string StdOut, string StdErr) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["SLURM_CONF"] = Conf;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, err.Result);
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private void Stop()
    {
        // slurmd, then slurmctld, then munged: each by the pid it wrote.
        foreach (var pidFile in new[] { "slurmd.pid", "slurmctld.pid", "munged.pid" })
        {
            var path = Path.Combine(_dir, pidFile);
            if (!File.Exists(path) || !int.TryParse(File.ReadAllText(path).Trim(), out var pid)) continue;
            try
            {
                using var p = Process.GetProcessById(pid);
                Tool.Run("kill", "-TERM", pid.ToString());
                if (!p.WaitForExit(15_000)) p.Kill();
            }
            catch (ArgumentException) { }
            catch (InvalidOperationException) { }
        }
    }

    public void Dispose()
    {
        if (SkipReason is null) Stop();
        try { Directory.Delete(_dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
