using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Deid.Faces;
using Deid.Models;
using Deid.Models.Mapping;
using Deid.Models.Weights;
using Deid.Training.Losses;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Deid.Training;

/// <summary>A loss became NaN or infinite: training stops before the update, the last checkpoint stays the good one.</summary>
public sealed class NonFiniteLossException(string message) : Exception(message);

/// <summary>A run folder that cannot be started or resumed as asked (one line, for the CLI).</summary>
public sealed class RunException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Every loss of one step, as logged in <c>log.csv</c>.</summary>
public sealed record StepLosses(long Step, bool CrossIdentity, double Total, double Adv, double Id, double Lnd, double Rec,
    double D, double R1, double DRealAccuracy, double DFakeAccuracy, double Seconds)
{
    public const string CsvHeader = "step,kind,total_g,l_adv,l_id,l_lnd,l_rec,l_d,r1,d_acc_real,d_acc_fake,seconds";

    public string ToCsv()
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        return string.Join(",", Step.ToString(CultureInfo.InvariantCulture), CrossIdentity ? "cross" : "same",
            F(Total), F(Adv), F(Id), F(Lnd), F(Rec), F(D), F(R1), F(DRealAccuracy), F(DFakeAccuracy), Seconds.ToString("F3", CultureInfo.InvariantCulture));
    }
}

/// <summary>Validation on the held-out split: the independent recognizer's identity cosine and E_lnd's landmark error.</summary>
public sealed record ValidationResult(long Step, double IdentitySimilarity, double SamePersonRate, double LandmarkError)
{
    /// <summary>The best-checkpoint criterion: identity cosine minus landmark error (inter-ocular units); higher is better.</summary>
    public double Score => (double.IsNaN(IdentitySimilarity) ? 0 : IdentitySimilarity) - LandmarkError;
    public const string CsvHeader = "step,identity_similarity,same_person_rate,landmark_error,score";
    public string ToCsv() => string.Join(",", new[] { (double)Step, IdentitySimilarity, SamePersonRate, LandmarkError, Score }
        .Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
}

/// <summary>
/// Where a run came from; a resume must name the same data, generator and identity encoder. <paramref name="Generator"/>
/// (the generator file, when known) is linked into every checkpoint as <c>G.safetensors</c>, so
/// <c>--weights-dir RUN/best</c> draws with the G the run was trained against.
/// </summary>
public sealed record RunSources(string Data, string GeneratorSha256, string IdentityEncoder, string? Generator = null);

/// <summary>
/// The training of Nitzan et al. 2020 (§3.3): per step a generator-side update of E_attr and M with
/// λ1·L_adv + λ2·L_id + λ3·L_lnd + λ4·L_rec (L_rec only when I_id = I_attr, i.e. except every
/// <see cref="TrainingConfig.CrossIdentityEvery"/>-th step), then a D_W update with the logistic loss and R1 on real
/// w. Adam on both sides. Run folder: <c>config.json</c>, <c>log.csv</c> (every loss, every step),
/// <c>validation.csv</c>, <c>grids/step-N.png</c>, <c>checkpoints/step-N/</c> and <c>best/</c> (each
/// <c>E_attr.safetensors</c> + <c>M.safetensors</c> in <see cref="LatentWeights"/>' format, plus <c>D_W.safetensors</c>,
/// <c>optimizer_g.bin</c>, <c>optimizer_d.bin</c>, <c>state.json</c>, <c>config.json</c>). Every checkpoint is
/// written into a temp folder and renamed into place, so an interrupted or failed write leaves the previous one intact.
/// <para>
/// Randomness: the only random choices are the data order (a pure function of seed and stream position) and the
/// initial weights (seeded before construction), so the saved step and loader position are the whole RNG state and a
/// resume continues bit-identically on the same device and thread count.
/// </para>
/// </summary>
public sealed class Trainer : IDisposable
{
    public const string CheckpointsDir = "checkpoints";
    public const string BestDir = "best";
    public const string DwFile = "D_W.safetensors";
    public const string OptimizerGFile = "optimizer_g.bin";
    public const string OptimizerDFile = "optimizer_d.bin";
    public const string StateFile = "state.json";
    public const string ConfigFile = "config.json";

    private readonly TrainableDisentangler _model;
    private readonly DW _dw;
    private readonly ImageLatentDataset _data;
    private readonly OnnxFaceRecognizer? _recognizer;
    private readonly Device _device;
    private readonly Adam _optG, _optD;
    private readonly List<int> _trainSplit, _valSplit;
    private PairLoader _loader;
    private readonly LossScaler? _scaler;
    private StreamWriter? _log;
    private double _bestScore = double.NegativeInfinity;
    private long _bestStep = -1;
    private long _lastCheckpointStep = -1;

    public TrainingConfig Config { get; }
    public RunSources Sources { get; }
    public string RunDir { get; }
    public long Step { get; private set; }
    public long LoaderPosition => _loader.Position;
    public ValidationResult? LastValidation { get; private set; }
    /// <summary>Progress lines (carriage-return updated) go here; null: silent.</summary>
    public TextWriter? Progress { get; set; }

    /// <param name="recognizer">The independent recognizer for validation (null: the identity term is not measured).</param>
    public Trainer(TrainingConfig config, TrainableDisentangler model, DW dw, ImageLatentDataset data, string runDir,
        RunSources sources, OnnxFaceRecognizer? recognizer = null, Device? device = null)
    {
        Config = config;
        _model = model;
        _dw = dw;
        _data = data;
        RunDir = Path.GetFullPath(runDir);
        Sources = sources;
        _recognizer = recognizer;
        _device = device ?? CPU;
        if (data.Size != model.Generator.Size || data.StyleDim != model.Generator.StyleDim)
            throw new RunException($"the dataset holds {data.Size}² images with {data.StyleDim}-d w, the generator draws {model.Generator.Size}² from {model.Generator.StyleDim}-d w: it was not made with this generator");
        int val = Math.Min(config.ValidationCount, data.Indices.Count / 2);
        _valSplit = data.Indices.Skip(data.Indices.Count - val).ToList();
        _trainSplit = data.Indices.Take(data.Indices.Count - val).ToList();
        if (_trainSplit.Count < config.BatchSize)
            throw new RunException($"the dataset has {_trainSplit.Count} training images after holding out {val}; batch_size is {config.BatchSize}");
        _optG = torch.optim.Adam(model.TrainableParameters(), config.LrG, config.Beta1, config.Beta2);
        _optD = torch.optim.Adam(dw.parameters(), config.LrD, config.Beta1, config.Beta2);
        _loader = new PairLoader(data, _trainSplit, config.Seed);
        // fp16 gradients flowing back through G underflow without scaling; bf16 has fp32's range and needs none.
        if (model.FrozenType == ScalarType.Float16) _scaler = new LossScaler();
    }

    /// <summary>The fp16 loss scale now (null: no loss scaling in this precision).</summary>
    public double? LossScale => _scaler?.Scale;

    /// <summary>Starts a new run in <see cref="RunDir"/> (which must not hold one).</summary>
    public void StartNew()
    {
        if (LatestCheckpoint(RunDir) is { } existing)
            throw new RunException($"{RunDir} already holds a run (checkpoint {Path.GetFileName(existing)}): pass --resume to continue it, or choose another -o");
        Directory.CreateDirectory(RunDir);
        AtomicFile.WriteAllText(Path.Combine(RunDir, ConfigFile), Config.ToJson());
        AtomicFile.WriteAllText(Path.Combine(RunDir, "log.csv"), StepLosses.CsvHeader + "\n");
        AtomicFile.WriteAllText(Path.Combine(RunDir, "validation.csv"), ValidationResult.CsvHeader + "\n");
        OpenLog();
    }

    /// <summary>
    /// Continues from the newest checkpoint of <see cref="RunDir"/>: weights, optimizer moments, step, loader position,
    /// best score. The configuration must equal the run's (except steps); log rows after the checkpoint are dropped.
    /// </summary>
    public void Resume()
    {
        var dir = LatestCheckpoint(RunDir) ?? throw new RunException($"{RunDir} holds no checkpoint to resume from");
        var saved = TrainingConfig.FromJson(File.ReadAllText(Path.Combine(dir, ConfigFile)), Path.Combine(dir, ConfigFile));
        var diffs = saved.Differences(Config, TrainingConfig.ResumableKeys);
        if (diffs.Count > 0)
            throw new RunException($"cannot resume {RunDir}: the config differs from the run's in {string.Join(", ", diffs)}");
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, StateFile)))!.AsObject();
        var src = state["sources"].Deserialize<RunSources>(TrainingConfig.Json)!;
        var srcDiffs = new List<string>();
        if (src.GeneratorSha256 != Sources.GeneratorSha256) srcDiffs.Add("generator (another file)");
        if (src.IdentityEncoder != Sources.IdentityEncoder) srcDiffs.Add($"identity encoder ({src.IdentityEncoder} → {Sources.IdentityEncoder})");
        if (Path.GetFullPath(src.Data) != Path.GetFullPath(Sources.Data)) srcDiffs.Add($"data ({src.Data} → {Sources.Data})");
        if (srcDiffs.Count > 0) throw new RunException($"cannot resume {RunDir}: it was trained with another {string.Join(", ", srcDiffs)}");
        LoadCheckpoint(dir, state);
        // log.csv keeps the rows up to the checkpoint (a crash may have logged later steps that are now redone).
        var logPath = Path.Combine(RunDir, "log.csv");
        TrimCsv(logPath, StepLosses.CsvHeader, Step);
        TrimCsv(Path.Combine(RunDir, "validation.csv"), ValidationResult.CsvHeader, Step);
        AtomicFile.WriteAllText(Path.Combine(RunDir, ConfigFile), Config.ToJson());
        OpenLog();
    }

    private static void TrimCsv(string path, string header, long maxStep)
    {
        var rows = File.Exists(path) ? File.ReadAllLines(path).Skip(1) : [];
        var kept = rows.Where(r => r.Length > 0 && long.TryParse(r.Split(',')[0].Split('.')[0], CultureInfo.InvariantCulture, out var s) && s <= maxStep);
        AtomicFile.WriteAllText(path, string.Join("\n", new[] { header }.Concat(kept)) + "\n");
    }

    private void OpenLog()
    {
        _log?.Dispose();
        _log = new StreamWriter(new FileStream(Path.Combine(RunDir, "log.csv"), FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
    }

    /// <summary>Trains until <see cref="TrainingConfig.Steps"/>; Ctrl-C (<paramref name="ct"/>) checkpoints the current step, then throws.</summary>
    public void Run(CancellationToken ct = default)
    {
        var sw = Stopwatch.StartNew();
        long first = Step;
        StepLosses? last = null;
        while (Step < Config.Steps)
        {
            if (ct.IsCancellationRequested)
            {
                if (Step != _lastCheckpointStep) SaveCheckpoint();
                Progress?.WriteLine();
                throw new OperationCanceledException($"stopped at step {Step}; checkpoint saved", ct);
            }
            last = TrainStep();
            if (Config.ValidateEvery > 0 && Step % Config.ValidateEvery == 0) ValidateAndKeepBest();
            if (Config.GridEvery > 0 && Step % Config.GridEvery == 0) WriteGrid(Path.Combine(RunDir, "grids", $"step-{Step:D8}.png"));
            if (Config.CheckpointEvery > 0 && Step % Config.CheckpointEvery == 0) SaveCheckpoint();
            ReportProgress(last, first, sw.Elapsed);
        }
        if (Step != _lastCheckpointStep) SaveCheckpoint();
        Progress?.WriteLine();
    }

    private DateTime _lastReport;

    private void ReportProgress(StepLosses s, long first, TimeSpan elapsed)
    {
        if (Progress is null) return;
        var now = DateTime.UtcNow;
        if ((now - _lastReport).TotalSeconds < 0.5 && Step < Config.Steps) return;
        _lastReport = now;
        double rate = (Step - first) / Math.Max(1e-9, elapsed.TotalSeconds);
        var eta = rate > 0 ? TimeSpan.FromSeconds((Config.Steps - Step) / rate) : TimeSpan.Zero;
        int width = 24, fill = (int)(width * Step / Math.Max(1, Config.Steps));
        var bar = new string('#', fill) + new string('-', width - fill);
        var val = LastValidation is { } v ? $" | val id {v.IdentitySimilarity:F3} lnd {v.LandmarkError:F3}" : "";
        Progress.Write(string.Create(CultureInfo.InvariantCulture,
            $"\rstep {Step}/{Config.Steps} [{bar}] {rate:F2} step/s ETA {eta:hh\\:mm\\:ss} | adv {s.Adv:F3} id {s.Id:F3} lnd {s.Lnd:F2} rec {s.Rec:F3} D {s.D:F3} r1 {s.R1:F3}{val}   "));
        Progress.Flush();
    }

    /// <summary>One generator-side and one D_W update; returns (and logs) every loss.</summary>
    public StepLosses TrainStep()
    {
        var sw = Stopwatch.StartNew();
        bool cross = Config.CrossIdentityEvery == 1 || (Step + 1) % Config.CrossIdentityEvery == 0;
        using var scope = NewDisposeScope();
        var (attr, realW) = _loader.Next(Config.BatchSize, _device);
        var idImages = cross ? _loader.Next(Config.BatchSize, _device).Images : attr;
        Tensor idCode, attrLnd;
        using (no_grad())
        {
            idCode = _model.EncodeIdentity(idImages);
            attrLnd = _model.Landmarks(attr);
        }
        _model.train(true);
        _dw.train(true);

        // Generator side: E_attr and M.
        var (w, output) = _model.Forward(idCode, attr);
        var lAdv = AdversarialLosses.Generator(_dw, w);
        var lId = IdentityLoss.Compute(idCode, _model.EncodeIdentity(output));
        var lLnd = LandmarkLoss.Compute(attrLnd, _model.Landmarks(output));
        var lRec = cross ? zeros(1, device: _device).squeeze() : ReconstructionLoss.Compute(attr, output, Config.RecAlpha);
        var total = Config.LambdaAdv * lAdv + Config.LambdaId * lId + Config.LambdaLnd * lLnd + Config.LambdaRec * lRec;
        double vAdv = lAdv.item<float>(), vId = lId.item<float>(), vLnd = lLnd.item<float>(), vRec = lRec.item<float>(), vTotal = total.item<float>();
        CheckFinite(("L_adv", vAdv), ("L_id", vId), ("L_lnd", vLnd), ("L_rec", vRec), ("total", vTotal));
        _optG.zero_grad();
        if (_scaler is null) { total.backward(); _optG.step(); }
        else
        {
            (total * _scaler.Scale).backward();
            if (_scaler.Unscale(_model.TrainableParameters())) _optG.step();   // an overflowing step is skipped, as torch's GradScaler does
        }

        // D_W: real w of the attribute images vs M's output (before this step's update).
        var fake = w.detach();
        var lD = AdversarialLosses.Discriminator(_dw, realW, fake);
        var r1 = Config.R1Gamma > 0 ? AdversarialLosses.R1(_dw, realW, Config.R1Gamma) : zeros(1, device: _device).squeeze();
        double vD = lD.item<float>(), vR1 = r1.item<float>();
        CheckFinite(("L_D", vD), ("R1", vR1));
        var (accReal, accFake) = AdversarialLosses.Accuracy(_dw, realW, fake);
        _optD.zero_grad();
        (lD + r1).backward();
        _optD.step();
        _optG.zero_grad();   // D_W's backward does not reach M, but L_adv's did reach D_W: nothing stale is kept.
        _optD.zero_grad();

        Step++;
        var s = new StepLosses(Step, cross, vTotal, vAdv, vId, vLnd, vRec, vD, vR1, accReal, accFake, sw.Elapsed.TotalSeconds);
        _log?.WriteLine(s.ToCsv());
        return s;
    }

    private void CheckFinite(params (string Name, double Value)[] values)
    {
        foreach (var (name, v) in values)
        {
            if (double.IsFinite(v)) continue;
            _log?.Flush();
            var good = LatestCheckpoint(RunDir) is { } c ? $"the last good checkpoint is {c}" : "no checkpoint was written yet";
            throw new NonFiniteLossException($"loss {name} became {(double.IsNaN(v) ? "NaN" : "infinite")} at step {Step + 1}; training stopped before the update, {good}");
        }
    }

    // ---------------------------------------------------------------- validation and grid

    /// <summary>Held-out (identity, attribute) pairs: fixed for the run (from the seed), identity ≠ attribute image.</summary>
    private List<(int Id, int Attr)> ValidationPairs()
    {
        var rng = new Random(unchecked((int)(Config.Seed * 31 + 5)));
        var pairs = new List<(int, int)>();
        if (_valSplit.Count < 2) return pairs;
        for (int p = 0; p < Config.ValidationPairs; p++)
        {
            int a = rng.Next(_valSplit.Count), b = rng.Next(_valSplit.Count - 1);
            if (b >= a) b++;
            pairs.Add((_valSplit[a], _valSplit[b]));
        }
        return pairs;
    }

    /// <summary>Generates I_out for held-out pairs and measures it (eval mode, no autograd).</summary>
    public ValidationResult Validate()
    {
        var pairs = ValidationPairs();
        if (pairs.Count == 0) return new ValidationResult(Step, double.NaN, double.NaN, double.NaN);
        _model.train(false);
        try
        {
            using var _ = no_grad();
            var sims = new List<double>();
            var lnd = new List<double>();
            for (int b = 0; b < pairs.Count; b += Config.BatchSize)
            {
                using var scope = NewDisposeScope();
                var chunk = pairs.Skip(b).Take(Config.BatchSize).ToList();
                var idImg = _data.Images(chunk.Select(p => p.Id).ToList(), _device);
                var attrImg = _data.Images(chunk.Select(p => p.Attr).ToList(), _device);
                var (_, output) = _model.Forward(_model.EncodeIdentity(idImg), attrImg);
                output = output.clamp(-1, 1);
                var attrLnd = _model.Landmarks(attrImg);
                var outLnd = _model.Landmarks(output);
                lnd.AddRange(LandmarkLoss.NormalizedError(attrLnd, outLnd).cpu().data<float>().ToArray().Select(v => (double)v));
                if (_recognizer is not null)
                {
                    var idLnd = _model.Landmarks(idImg);
                    for (int i = 0; i < chunk.Count; i++)
                        sims.Add(OnnxFaceRecognizer.Cosine(Embed(idImg[i], idLnd[i]), Embed(output[i], outLnd[i])));
                }
            }
            double sim = sims.Count > 0 ? sims.Average() : double.NaN;
            double same = sims.Count > 0 ? sims.Count(s => s >= OnnxFaceRecognizer.SamePersonThreshold) / (double)sims.Count : double.NaN;
            return LastValidation = new ValidationResult(Step, sim, same, lnd.Average());
        }
        finally { _model.train(true); }
    }

    private float[] Embed(Tensor image, Tensor landmarks)
    {
        using var scope = NewDisposeScope();
        var bgr = CropTensors.ToBgrHwc(image.unsqueeze(0))[0].contiguous();
        int s = (int)bgr.shape[0];
        using var mat = OpenCvSharp.Mat.FromPixelData(s, s, OpenCvSharp.MatType.CV_8UC3, bgr.data<byte>().ToArray());
        var pts = landmarks.cpu().data<float>().ToArray();
        var lm = Enumerable.Range(0, 68).Select(i => new OpenCvSharp.Point2f(pts[2 * i], pts[2 * i + 1])).ToList();
        try { return _recognizer!.Embed(mat, lm); }
        catch (InvalidOperationException) { return new float[_recognizer!.Dimension]; }   // unalignable: scores 0
    }

    private void ValidateAndKeepBest()
    {
        var v = Validate();
        File.AppendAllText(Path.Combine(RunDir, "validation.csv"), v.ToCsv() + "\n");
        if (!double.IsNaN(v.Score) && v.Score > _bestScore)
        {
            _bestScore = v.Score;
            _bestStep = Step;
            WriteCheckpointTo(Path.Combine(RunDir, BestDir));
        }
    }

    /// <summary>The paper's Figure 4 layout: attribute images across the top, identity images down the left, each cell G(M(id, attr)).</summary>
    public void WriteGrid(string path)
    {
        var ids = _valSplit.Count >= 2 ? _valSplit : _trainSplit;
        int n = Math.Min(Config.GridSize, ids.Count / 2);
        if (n < 1) return;
        var idIdx = ids.Take(n).ToList();
        var attrIdx = ids.Skip(n).Take(n).ToList();
        _model.train(false);
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            int s = _data.Size;
            var canvas = full(new long[] { 3, (n + 1) * s, (n + 1) * s }, 1f, device: _device);
            var idImg = _data.Images(idIdx, _device);
            var attrImg = _data.Images(attrIdx, _device);
            for (int j = 0; j < n; j++) canvas[.., 0..s, ((j + 1) * s)..((j + 2) * s)] = attrImg[j];
            var idCodes = _model.EncodeIdentity(idImg);
            for (int i = 0; i < n; i++)
            {
                canvas[.., ((i + 1) * s)..((i + 2) * s), 0..s] = idImg[i];
                var (_, row) = _model.Forward(idCodes[i].unsqueeze(0).expand(n, -1), attrImg);
                row = row.clamp(-1, 1);
                for (int j = 0; j < n; j++) canvas[.., ((i + 1) * s)..((i + 2) * s), ((j + 1) * s)..((j + 2) * s)] = row[j];
            }
            ImageIo.WritePng(path, CropTensors.ToBgrHwc(canvas.unsqueeze(0))[0]);
        }
        finally { _model.train(true); }
    }

    // ---------------------------------------------------------------- checkpoints

    /// <summary>Writes <c>checkpoints/step-N/</c> (and prunes old periodic ones).</summary>
    public string SaveCheckpoint()
    {
        _log?.Flush();
        var dir = Path.Combine(RunDir, CheckpointsDir, $"step-{Step:D8}");
        WriteCheckpointTo(dir);
        _lastCheckpointStep = Step;
        if (Config.KeepCheckpoints > 0)
            foreach (var old in ListCheckpoints(RunDir).SkipLast(Config.KeepCheckpoints))
                try { Directory.Delete(old, true); } catch (IOException) { }
        return dir;
    }

    /// <summary>All checkpoint files into <c>.DIR.tmp</c>, then renamed to <paramref name="dir"/> (replacing it).</summary>
    private void WriteCheckpointTo(string dir)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(dir))!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(dir)}.{Environment.ProcessId}.tmp");
        var old = Path.Combine(parent, $".{Path.GetFileName(dir)}.{Environment.ProcessId}.old");
        try
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
            Directory.CreateDirectory(tmp);
            var meta = new Dictionary<string, string> { ["step"] = Step.ToString(CultureInfo.InvariantCulture) };
            LatentWeights.SaveAttrEncoder(Path.Combine(tmp, LatentWeights.AttrEncoderFile), _model.AttributeEncoder, _model.AttributeNormalization, meta);
            LatentWeights.SaveMapper(Path.Combine(tmp, LatentWeights.MapperFile), _model.Mapper, meta);
            SafeTensors.Save(Path.Combine(tmp, DwFile), PyTorchOrderStateDict(_dw), meta);
            AtomicFile.Write(Path.Combine(tmp, OptimizerGFile), s => { using var bw = new BinaryWriter(s, Encoding.UTF8, leaveOpen: true); _optG.save_state_dict(bw); });
            AtomicFile.Write(Path.Combine(tmp, OptimizerDFile), s => { using var bw = new BinaryWriter(s, Encoding.UTF8, leaveOpen: true); _optD.save_state_dict(bw); });
            AtomicFile.WriteAllText(Path.Combine(tmp, ConfigFile), Config.ToJson());
            // A link, not a copy: G is frozen and large. Were it moved later, latent mode falls back to the models folder.
            if (Sources.Generator is { } gen && File.Exists(gen))
                File.CreateSymbolicLink(Path.Combine(tmp, LatentNetworks.GeneratorFile), Path.GetFullPath(gen));
            var state = new JsonObject
            {
                ["step"] = Step,
                ["loader_position"] = _loader.Position,
                ["seed"] = Config.Seed,
                ["best_score"] = double.IsFinite(_bestScore) ? _bestScore : null,
                ["best_step"] = _bestStep,
                ["sources"] = JsonSerializer.SerializeToNode(Sources, TrainingConfig.Json),
                ["e_attr_input_size"] = _model.AttributeInputSize,
                ["loss_scale"] = _scaler is null ? null : JsonSerializer.SerializeToNode(_scaler.State, TrainingConfig.Json),
                ["written_utc"] = DateTime.UtcNow.ToString("O"),
            };
            AtomicFile.WriteAllText(Path.Combine(tmp, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(dir)) Directory.Move(dir, old);
            Directory.Move(tmp, dir);
            if (Directory.Exists(old)) Directory.Delete(old, true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, true); } catch (IOException) { }
            if (!Directory.Exists(dir) && Directory.Exists(old)) Directory.Move(old, dir);
            throw new RunException($"cannot write checkpoint {dir} ({e.Message.Split('\n')[0]}); the previous checkpoint is unchanged", e);
        }
    }

    private static Dictionary<string, Tensor> PyTorchOrderStateDict(nn.Module m) => Deid.Models.Encoders.PyTorchOrder.StateDict(m);

    private void LoadCheckpoint(string dir, JsonObject state)
    {
        try
        {
            StateDict.LoadFile(_model.AttributeEncoder, Path.Combine(dir, LatentWeights.AttrEncoderFile));
            StateDict.LoadFile(_model.Mapper, Path.Combine(dir, LatentWeights.MapperFile));
            StateDict.LoadFile(_dw, Path.Combine(dir, DwFile));
            using (var r = new BinaryReader(File.OpenRead(Path.Combine(dir, OptimizerGFile)))) _optG.load_state_dict(r);
            using (var r = new BinaryReader(File.OpenRead(Path.Combine(dir, OptimizerDFile)))) _optD.load_state_dict(r);
        }
        catch (Exception e) when (e is WeightsException or IOException or InvalidDataException or ArgumentException)
        {
            throw new RunException($"cannot resume from {dir}: {e.Message.Split('\n')[0]}", e);
        }
        Step = state["step"]!.GetValue<long>();
        _lastCheckpointStep = Step;
        _bestScore = state["best_score"]?.GetValue<double>() ?? double.NegativeInfinity;
        _bestStep = state["best_step"]?.GetValue<long>() ?? -1;
        if (_scaler is not null && state["loss_scale"] is { } ls) _scaler.State = ls.Deserialize<LossScaler.Snapshot>(TrainingConfig.Json)!;
        _loader.Dispose();
        _loader = new PairLoader(_data, _trainSplit, Config.Seed, state["loader_position"]!.GetValue<long>());
    }

    /// <summary>Periodic checkpoints of a run, oldest first.</summary>
    public static IReadOnlyList<string> ListCheckpoints(string runDir)
    {
        var root = Path.Combine(runDir, CheckpointsDir);
        if (!Directory.Exists(root)) return [];
        return Directory.GetDirectories(root, "step-*")
            .Where(d => File.Exists(Path.Combine(d, StateFile)))
            .OrderBy(d => d, StringComparer.Ordinal).ToList();
    }

    public static string? LatestCheckpoint(string runDir) => ListCheckpoints(runDir).LastOrDefault();

    public void Dispose()
    {
        _log?.Dispose();
        _log = null;
        _loader.Dispose();
        _optG.Dispose();
        _optD.Dispose();
    }
}
