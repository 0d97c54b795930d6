using System.CommandLine;
using Deid.Cli.Batch;
using Deid.Pipeline;
using Spectre.Console;

namespace Deid.Cli.Commands;

/// <summary>
/// <c>deid batch</c>: many clips, resumable. Locally (default) N clips at once in one process on one engine; with
/// <c>--slurm</c> a job array whose tasks run the same command with <c>--task-index</c>. Exit codes: 0 every clip done,
/// 3 some clips failed, 1 the batch could not start, 2 the command line does not parse, 4 (<c>--status</c>) clips still
/// queued or running, 130 cancelled.
/// </summary>
public static class BatchCommand
{
    private sealed class Opts
    {
        public readonly Argument<string[]> Inputs = new("inputs") { Description = "Folders (searched recursively; video files found by probing), globs, list files (.txt: one path a line; .jsonl: {\"input\": PATH, \"output\": REL}) or video files.", Arity = ArgumentArity.ZeroOrMore };
        public readonly Option<string?> Output = new("--output", "-o") { Description = "OUT_DIR: outputs mirror the input tree here, each with NAME.report.json; also manifest.jsonl, summary.json, summary.html." };
        public readonly AnonymizeOptionSet Job = new();
        public readonly Option<int> Jobs = new("--jobs", "-j") { Description = "Clips at once in this process (models are loaded once); each clip gets cores/N landmark workers unless --workers is given.", DefaultValueFactory = _ => 1 };
        public readonly Option<string?> Manifest = new("--manifest") { Description = "The resumable manifest (JSONL; default OUT_DIR/manifest.jsonl)." };
        public readonly Option<int> Retry = new("--retry") { Description = "Times a failing clip is tried again (within the run and across reruns of the same input).", DefaultValueFactory = _ => 1 };
        public readonly Option<bool> Checksum = new("--checksum") { Description = "Identify inputs by sha256 as well as size (default: size + mtime)." };
        public readonly Option<bool> Slurm = new("--slurm") { Description = "Run as a Slurm job array instead of locally (with --print or --submit)." };
        public readonly Option<bool> Print = new("--print") { Description = "With --slurm: write the sbatch script to stdout (and OUT_DIR/.deid-batch/PLAN.sbatch); nothing is submitted." };
        public readonly Option<bool> Submit = new("--submit") { Description = "With --slurm: submit the job array with sbatch and print its job id." };
        public readonly Option<string?> Partition = new("--partition") { Description = "Slurm partition." };
        public readonly Option<string?> Time = new("--time") { Description = "Slurm time limit per array task (e.g. 02:00:00)." };
        public readonly Option<int> Cpus = new("--cpus") { Description = "Slurm CPUs per array task (the task's landmark workers).", DefaultValueFactory = _ => 2 };
        public readonly Option<int> Gpus = new("--gpus") { Description = "Slurm GPUs per array task (--gres=gpu:N; the task then runs on cuda).", DefaultValueFactory = _ => 0 };
        public readonly Option<int> ArrayMax = new("--array-max") { Description = "At most this many array tasks at once (sbatch --array=0-N%K; 0 = no limit).", DefaultValueFactory = _ => 0 };
        public readonly Option<int> ClipsPerTask = new("--clips-per-task") { Description = "Clips each array task runs (one after another, models loaded once).", DefaultValueFactory = _ => 1 };
        public readonly Option<string?> Status = new("--status") { Description = "Show the progress of the batch in OUT_DIR (manifest, squeue, sacct) and rewrite its summary." };
        public readonly Option<int?> TaskIndex = new("--task-index") { Description = "(Slurm array task) run task I of --plan from the manifest." };
        public readonly Option<string?> Plan = new("--plan") { Description = "(Slurm array task) the plan id the script names." };
    }

    public static Command Create()
    {
        var o = new Opts();
        var cmd = new Command("batch", "Anonymize many clips (a folder, a glob, a list) into OUT_DIR, resumably: locally with the models loaded once, or as a Slurm job array.");
        cmd.Arguments.Add(o.Inputs);
        cmd.Options.Add(o.Output);
        o.Job.AddTo(cmd);
        foreach (var opt in new Option[] { o.Jobs, o.Manifest, o.Retry, o.Checksum, o.Slurm, o.Print, o.Submit, o.Partition, o.Time, o.Cpus, o.Gpus, o.ArrayMax, o.ClipsPerTask, o.Status, o.TaskIndex, o.Plan })
            cmd.Options.Add(opt);
        cmd.SetAction(async (ParseResult r, CancellationToken outer) =>
        {
            // SIGINT / SIGTERM (Ctrl-C, scancel) stop the batch through our own registration as well as
            // System.CommandLine's: every running clip is interrupted and recorded, temp outputs removed.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(outer);
            void OnSignal(System.Runtime.InteropServices.PosixSignalContext c) { c.Cancel = true; try { stop.Cancel(); } catch (ObjectDisposedException) { } }
            using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, OnSignal);
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, OnSignal);
            var ct = stop.Token;
            try
            {
                if (r.GetValue(o.Status) is { } statusDir) return Status(statusDir, r.GetValue(o.Manifest));
                if (r.GetValue(o.TaskIndex) is int index) return await RunTaskAsync(r, o, index, ct);
                return await RunAsync(r, o, ct);
            }
            catch (Exception e)
            {
                return CliErrors.Report(e);
            }
        });
        return cmd;
    }

    private static string ManifestPath(string outDir, string? manifest) => Path.GetFullPath(manifest ?? Path.Combine(outDir, "manifest.jsonl"));

    private static async Task<int> RunAsync(ParseResult r, Opts o, CancellationToken ct)
    {
        var outDir = r.GetValue(o.Output) is { Length: > 0 } d ? Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)) : throw new ArgumentException("Option '--output' (OUT_DIR) is required");
        var options = o.Job.Build(r);
        DeidEngine.ValidateOptions(options);
        var jobs = r.GetValue(o.Jobs);
        var retry = r.GetValue(o.Retry);
        if (jobs is < 1 or > 64) throw new ArgumentException($"--jobs must be between 1 and 64 (got {jobs})");
        if (retry is < 0 or > 100) throw new ArgumentException($"--retry must be between 0 and 100 (got {retry})");
        var slurm = r.GetValue(o.Slurm);
        var submit = r.GetValue(o.Submit);
        var print = r.GetValue(o.Print);
        if (!slurm && (submit || print || new Option[] { o.Partition, o.Time, o.Cpus, o.Gpus, o.ArrayMax, o.ClipsPerTask }.Any(x => AnonymizeOptionSet.Given(r, x))))
            throw new ArgumentException("--print, --submit, --partition, --time, --cpus, --gpus, --array-max and --clips-per-task belong to --slurm");
        if (slurm && submit == print) throw new ArgumentException("--slurm needs one of --print (write the sbatch script) or --submit (submit it)");
        if (slurm && submit && !Batch.Slurm.OnPath("sbatch")) throw new BatchException("--submit needs Slurm's sbatch, which is not on PATH (install slurm-client, or use --print and submit the script where Slurm is)");
        var request = new SlurmRequest
        {
            Partition = r.GetValue(o.Partition), Time = r.GetValue(o.Time), Cpus = r.GetValue(o.Cpus), Gpus = r.GetValue(o.Gpus),
            ArrayMax = r.GetValue(o.ArrayMax), ClipsPerTask = r.GetValue(o.ClipsPerTask),
        };
        if (slurm && (request.Cpus < 1 || request.Gpus < 0 || request.ArrayMax < 0 || request.ClipsPerTask < 1))
            throw new ArgumentException("--cpus and --clips-per-task must be at least 1, --gpus and --array-max at least 0");

        var manifest = new BatchManifest(ManifestPath(outDir, r.GetValue(o.Manifest)));
        var optionsJson = BatchManifest.OptionsJson(options);
        var state = manifest.Load();
        CheckHeader(manifest, state, outDir, optionsJson);
        var checksum = r.GetValue(o.Checksum);
        var found = BatchInputs.Discover(r.GetValue(o.Inputs) ?? [], outDir, f => KnownClip(state, f));
        var decisions = BatchPlanner.Decide(found.Clips, state, retry, checksum);

        Directory.CreateDirectory(outDir);
        if (state.Header is null)
            manifest.Append(new ManifestRecord { Type = "batch", Version = BatchManifest.FormatVersion, OutDir = outDir, Options = optionsJson, OptionsHash = BatchManifest.OptionsHash(optionsJson) });

        var skipped = decisions.Count(x => x.Action == ClipAction.Skip);
        var givenUp = decisions.Where(x => x.Action == ClipAction.GivenUp).ToList();
        var todo = decisions.Where(x => x.Action == ClipAction.Run).ToList();
        // stdout, so a failure later is still the only stderr line; --print keeps stdout for the script.
        var info = slurm && print ? Console.Error : Console.Out;
        info.WriteLine($"deid batch: {decisions.Count} clips ({found.SkippedFiles} other files skipped): {todo.Count} to do, {skipped} already done" +
                      (givenUp.Count > 0 ? $", {givenUp.Count} failed before {retry + 1} time(s) (not retried; raise --retry to try again)" : ""));

        if (slurm) return SlurmSubmit(r, o, manifest, state, outDir, options, request, todo, retry, submit, decisions);

        // ETA: the frame counts the headers promise
        var estimated = new long[todo.Count];
        Parallel.For(0, todo.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(2, Environment.ProcessorCount) },
            i => estimated[i] = BatchInputs.EstimateFrames(todo[i].Clip.Input));
        todo = todo.Select((x, i) => x with { Clip = x.Clip with { EstimatedFrames = estimated[i] } }).ToList();

        var settings = new BatchRunSettings { Jobs = jobs, Retry = retry, Checksum = checksum, Workers = AnonymizeOptionSet.Given(r, o.Job.Workers) ? options.Workers : null };
        BatchOutcome outcome;
        using (var engine = new DeidEngine(options.Device, options.ModelDir))
        {
            if (Console.IsOutputRedirected || todo.Count == 0)
                outcome = await new BatchRunner(engine, manifest, options, settings, new LineDisplay(Console.Out)).RunAsync(todo, ct);
            else
            {
                outcome = null!;
                await AnsiConsole.Progress().AutoClear(false).HideCompleted(true)
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .StartAsync(async ctx =>
                    {
                        var live = new BatchLiveDisplay(ctx);
                        outcome = await new BatchRunner(engine, manifest, options, settings, live).RunAsync(todo, ct);
                        live.Finish();
                    });
            }
        }
        return Finish(manifest, outDir, found.Clips, outcome);
    }

    /// <summary>A file the manifest already has as a clip, unchanged since: no need to probe it again.</summary>
    private static bool KnownClip(ManifestState state, string file)
    {
        if (!state.Clips.TryGetValue(file, out var last)) return false;
        try
        {
            var f = new FileInfo(file);
            return f.Length == last.Size && BatchManifest.Mtime(f) == last.Mtime;
        }
        catch (IOException) { return false; }
    }

    private static void CheckHeader(BatchManifest manifest, ManifestState state, string outDir, System.Text.Json.Nodes.JsonObject optionsJson)
    {
        if (state.Header is null)
        {
            if (state.Clips.Count > 0 || state.UnreadableLines > 0) throw new BatchException($"{manifest.Path} is not a deid batch manifest (it has no header line)");
            return;
        }
        var h = state.Header;
        if (!string.Equals(h.OutDir, outDir, StringComparison.Ordinal))
            throw new BatchException($"the manifest {manifest.Path} belongs to OUT_DIR {h.OutDir}, not {outDir}: use that OUT_DIR or another manifest");
        var hashed = BatchManifest.OptionsHash(h.Options ?? []);
        if (hashed != BatchManifest.OptionsHash(optionsJson))
            throw new BatchException($"the manifest {manifest.Path} was made with other options ({string.Join("; ", BatchManifest.Differences(BatchManifest.Hashed(h.Options ?? []), BatchManifest.Hashed(optionsJson)))}): rerun with the same options or use another OUT_DIR");
    }

    private static int Finish(BatchManifest manifest, string outDir, IReadOnlyList<BatchClip> clips, BatchOutcome outcome)
    {
        ManifestState state;
        using (manifest.Lock())
        {
            state = manifest.Load();
            BatchSummary.Write(outDir, state);
        }
        var mine = clips.Select(c => state.Clips.GetValueOrDefault(c.Input)).Where(x => x != null).Cast<ManifestRecord>().ToList();
        var failed = mine.Where(c => c.Status == ClipStatus.Failed).ToList();
        var flagged = mine.Where(BatchSummary.IsFlagged).ToList();
        var done = mine.Count(c => c.Status == ClipStatus.Done);
        Console.WriteLine($"batch: {done}/{clips.Count} clips done ({outcome.Done} now, {outcome.Frames} frames in {outcome.Elapsed.TotalSeconds:F1}s), {failed.Count} failed" +
                          (outcome.Interrupted > 0 ? $", {outcome.Interrupted} interrupted" : "") + $" -> {Path.Combine(outDir, "summary.html")}");
        foreach (var f in failed) Console.WriteLine($"  failed: {f.Input}: {f.Error}");
        foreach (var f in flagged) Console.WriteLine($"  FLAGGED (fallback blur fired): {f.Input}: {f.FallbackBlurred} face instances blurred instead of processed");
        if (outcome.Cancelled)
        {
            Console.Error.WriteLine("deid: cancelled; rerun the same command to continue");
            return BatchExit.Cancelled;
        }
        return failed.Count > 0 || done < clips.Count ? BatchExit.SomeFailed : BatchExit.Ok;
    }

    // ---------------- Slurm ----------------

    private static int SlurmSubmit(ParseResult r, Opts o, BatchManifest manifest, ManifestState state, string outDir, AnonymizeOptions options,
        SlurmRequest request, List<ClipDecision> todo, int retry, bool submit, List<ClipDecision> all)
    {
        // A clip an earlier job still has queued or running is not planned twice.
        var live = new Dictionary<string, bool>();
        bool Alive(string? plan)
        {
            if (plan is null || state.JobOf(plan) is not { } job) return false;
            if (!live.TryGetValue(job, out var a)) live[job] = a = Batch.Slurm.QueueStates(job) is { Count: > 0 };
            return a;
        }
        var busy = todo.Where(x => x.Last is { Status: ClipStatus.Queued or ClipStatus.Running } l && Alive(l.Plan)).ToList();
        todo = todo.Except(busy).ToList();
        if (busy.Count > 0) Console.Error.WriteLine($"deid batch: {busy.Count} clip(s) are still queued or running in an earlier job; not submitted again");
        if (todo.Count == 0)
        {
            Console.WriteLine($"batch: nothing to submit ({all.Count(x => x.Action == ClipAction.Skip)} done, {busy.Count} in an earlier job)");
            return all.Any(x => x.Action == ClipAction.GivenUp) ? BatchExit.SomeFailed : BatchExit.Ok;
        }

        var plan = $"{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..6]}";
        var tasks = todo.Chunk(request.ClipsPerTask).ToList();
        var device = request.Gpus > 0 ? (options.Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) ? options.Device : "cuda") : options.Device;
        var work = Path.Combine(outDir, ".deid-batch");
        var logs = Path.Combine(work, "logs");
        Directory.CreateDirectory(logs);
        var scriptPath = Path.Combine(work, plan + ".sbatch");
        var script = Batch.Slurm.Script(request, plan, tasks.Count, todo.Count, manifest.Path, outDir, device, logs);
        File.WriteAllText(scriptPath, script);
        File.SetUnixFileMode(scriptPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead);

        var records = new List<ManifestRecord>
        {
            new() { Type = "plan", Plan = plan, Tasks = tasks.Select(t => t.Select(x => x.Clip.Input).ToList()).ToList(), Retry = retry, Script = scriptPath },
        };
        for (var t = 0; t < tasks.Count; t++)
            foreach (var x in tasks[t])
            {
                var q = x.Fingerprint.Clone();
                q.Type = "clip";
                q.Output = x.Clip.Output;
                q.Report = x.Clip.Report;
                q.Status = ClipStatus.Queued;
                q.Attempt = x.PriorFailures;
                q.Plan = plan;
                q.Task = t;
                records.Add(q);
            }
        manifest.Append(records);

        if (!submit)
        {
            Console.Out.Write(script);
            Console.Error.WriteLine($"deid batch: wrote {scriptPath} ({todo.Count} clip(s), {tasks.Count} array task(s)); submit it with: sbatch {scriptPath}");
            return BatchExit.Ok;
        }
        string jobId;
        try { jobId = Batch.Slurm.Submit(scriptPath); }
        catch (BatchException e)
        {
            manifest.Append(new ManifestRecord { Type = "job", Plan = plan, Error = e.Message });
            throw;
        }
        manifest.Append(new ManifestRecord { Type = "job", Plan = plan, JobId = jobId });
        Console.WriteLine($"submitted batch job {jobId}: {todo.Count} clip(s) in {tasks.Count} array task(s); follow it with: deid batch --status {Batch.Slurm.Quote(outDir)}");
        return BatchExit.Ok;
    }

    /// <summary>One Slurm array task: the clips the plan gives this index, on one engine, status lines to the manifest.</summary>
    private static async Task<int> RunTaskAsync(ParseResult r, Opts o, int index, CancellationToken ct)
    {
        var outDir = r.GetValue(o.Output) is { Length: > 0 } d ? Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)) : throw new ArgumentException("--task-index needs -o OUT_DIR");
        var planId = r.GetValue(o.Plan) ?? throw new ArgumentException("--task-index needs --plan");
        var manifest = new BatchManifest(ManifestPath(outDir, r.GetValue(o.Manifest)));
        if (!manifest.Exists) throw new BatchException($"no manifest at {manifest.Path}");
        var state = manifest.Load();
        var header = state.Header ?? throw new BatchException($"{manifest.Path} is not a deid batch manifest (it has no header line)");
        if (header.OutDir != outDir) throw new BatchException($"the manifest {manifest.Path} belongs to OUT_DIR {header.OutDir}, not {outDir}");
        if (!state.Plans.TryGetValue(planId, out var plan) || plan.Tasks is null) throw new BatchException($"the manifest has no plan {planId}");
        if (index < 0 || index >= plan.Tasks.Count) throw new BatchException($"plan {planId} has tasks 0 to {plan.Tasks.Count - 1}, not {index}");

        var options = BatchManifest.ReadOptions(header.Options!);
        if (AnonymizeOptionSet.Given(r, o.Job.Device)) options = options with { Device = r.GetValue(o.Job.Device)! };
        AnonymizeOptionSet.TuneMemoryFor(options);
        var clips = plan.Tasks[index].Select(input =>
        {
            var q = state.Clips.GetValueOrDefault(input) ?? throw new BatchException($"the manifest has no line for {input}");
            return new BatchClip(input, Path.GetRelativePath(outDir, q.Output!), q.Output!, q.Report!);
        }).ToList();
        var retry = plan.Retry ?? 1;
        var decisions = BatchPlanner.Decide(clips, state, retry, checksum: false);
        foreach (var x in decisions.Where(x => x.Action != ClipAction.Run))
            Console.WriteLine($"task {index}: {x.Clip.Relative} already {(x.Action == ClipAction.Skip ? "done" : "failed")}; skipped");
        var todo = decisions.Where(x => x.Action == ClipAction.Run).ToList();
        var settings = new BatchRunSettings { Jobs = 1, Retry = retry, Plan = planId, Task = index, Workers = AnonymizeOptionSet.Given(r, o.Job.Workers) ? r.GetValue(o.Job.Workers) : null };
        Console.WriteLine($"task {index} of plan {planId} on {Environment.MachineName}: {todo.Count} clip(s), device {options.Device}, {settings.WorkersPerClip} worker(s)");
        BatchOutcome outcome;
        using (var engine = new DeidEngine(options.Device, options.ModelDir))
            outcome = await new BatchRunner(engine, manifest, options, settings, new LineDisplay(Console.Out)).RunAsync(todo, ct);
        using (manifest.Lock())
            BatchSummary.Write(outDir, manifest.Load());
        if (outcome.Cancelled) return BatchExit.Cancelled;
        return outcome.Failed > 0 ? BatchExit.SomeFailed : BatchExit.Ok;
    }

    // ---------------- status ----------------

    private static int Status(string dir, string? manifestOpt)
    {
        var outDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
        var manifest = new BatchManifest(ManifestPath(outDir, manifestOpt));
        if (!manifest.Exists) throw new BatchException($"no batch in {dir}: {manifest.Path} does not exist");
        var state = manifest.Load();
        var clips = state.Order.Select(i => state.Clips[i]).ToList();
        var queue = new Dictionary<string, Dictionary<string, int>?>();
        Dictionary<string, int>? Q(string job) => queue.TryGetValue(job, out var s) ? s : queue[job] = Batch.Slurm.QueueStates(job);

        int live = 0, lost = 0;
        foreach (var c in clips.Where(c => c.Status is ClipStatus.Queued or ClipStatus.Running))
        {
            bool? alive = c.Plan is { } p
                ? state.JobOf(p) is { } job ? Q(job) is { } st ? st.Count > 0 : null : false
                : c.Host == Environment.MachineName && c.Pid is int pid ? ProcessAlive(pid) : null;
            if (alive == false) lost++; else live++;
        }
        var counts = clips.GroupBy(c => c.Status ?? "?").ToDictionary(g => g.Key, g => g.Count());
        Console.WriteLine($"{outDir}: {clips.Count} clips: {counts.GetValueOrDefault(ClipStatus.Done)} done, {counts.GetValueOrDefault(ClipStatus.Failed)} failed, " +
                          $"{counts.GetValueOrDefault(ClipStatus.Running)} running, {counts.GetValueOrDefault(ClipStatus.Queued)} queued, {counts.GetValueOrDefault(ClipStatus.Interrupted)} interrupted" +
                          (lost > 0 ? $" ({lost} queued/running in a job or process that has ended: run the batch again)" : ""));
        foreach (var job in state.Jobs.TakeLast(5))
        {
            if (job.JobId is null) { Console.WriteLine($"  plan {job.Plan}: not submitted ({job.Error})"); continue; }
            var sq = Q(job.JobId);
            var (acct, why) = Batch.Slurm.AccountingStates(job.JobId);
            Console.WriteLine($"  job {job.JobId} (plan {job.Plan}): squeue " + (sq is null ? "unavailable" : sq.Count == 0 ? "no tasks left" : string.Join(", ", sq.Select(kv => $"{kv.Value} {kv.Key}"))) +
                              "; " + (acct is null ? why : "sacct " + string.Join(", ", acct.Select(kv => $"{kv.Value} {kv.Key}"))));
        }
        foreach (var c in clips.Where(c => c.Status == ClipStatus.Failed)) Console.WriteLine($"  failed: {c.Input}: {c.Error}");
        foreach (var c in clips.Where(BatchSummary.IsFlagged)) Console.WriteLine($"  FLAGGED (fallback blur fired): {c.Input}: {c.FallbackBlurred} face instances");
        using (manifest.Lock())
            BatchSummary.Write(outDir, manifest.Load());
        if (live > 0) return BatchExit.Unfinished;
        return counts.GetValueOrDefault(ClipStatus.Failed) > 0 || lost > 0 || counts.GetValueOrDefault(ClipStatus.Interrupted) > 0 ? BatchExit.SomeFailed : BatchExit.Ok;
    }

    private static bool ProcessAlive(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
    }
}
