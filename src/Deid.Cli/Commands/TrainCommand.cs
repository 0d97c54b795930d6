using System.CommandLine;
using Deid.Faces;
using Deid.Models;
using Deid.Training;

namespace Deid.Cli.Commands;

/// <summary>
/// <c>deid train --data DIR --generator G.safetensors --identity-encoder irse50|face-api -o RUN_DIR [--config FILE]
/// [--set key=value …] [--steps N] [--precision fp32|bf16|fp16] [--resume]</c>: trains E_attr and M (with D_W) as in Nitzan et al. 2020.
/// </summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "dataset folder from `deid generate-dataset`", Required = true };
        var generator = new Option<string>("--generator") { Description = "the StyleGAN2 generator the dataset was drawn from", Required = true };
        var idEnc = new Option<string?>("--identity-encoder") { Description = "E_id: irse50 (pSp's IR-SE50, imported) or face-api (default: the config's, irse50)" };
        idEnc.AcceptOnlyFromAmong("irse50", "face-api");
        var output = new Option<string>("--output", "-o") { Description = "run folder (checkpoints, best/, log.csv, grids/)", Required = true };
        var config = new Option<string?>("--config") { Description = "config file, JSON or YAML (.yaml/.yml) with snake_case keys; the defaults are the paper's values" };
        var set = new Option<string[]>("--set") { Description = "override one config key: --set lr_g=2e-5 (repeatable)", AllowMultipleArgumentsPerToken = false };
        var steps = new Option<long?>("--steps") { Description = "train until this step (default: the config's steps)" };
        var precision = new Option<string?>("--precision") { Description = "fp32 (default), bf16 (CPU or CUDA) or fp16 (CUDA, loss-scaled): the frozen G, E_id and E_lnd run in it, the trained networks and losses stay fp32" };
        precision.AcceptOnlyFromAmong("fp32", "bf16", "fp16");
        var resume = new Option<bool>("--resume") { Description = "continue the run in RUN_DIR from its newest checkpoint (the config must match)" };
        var models = ModelsCommand.DirectoryOption("models directory (E_id, E_lnd, the validation recognizer)");
        var device = new Option<string>("--device") { Description = "cpu, cuda, cuda:N or auto", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int?>("--threads") { Description = "torch CPU threads (default: libtorch's choice)" };
        var cmd = new Command("train", "Train E_attr and M (with D_W) against a frozen StyleGAN2, E_id and E_lnd (Nitzan et al. 2020)");
        foreach (var o in new Option[] { data, generator, idEnc, output, config, set, steps, precision, resume, models, device, threads }) cmd.Options.Add(o);
        cmd.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            // Before any tensor math: a resumed run must continue bit for bit (see Reproducibility).
            Reproducibility.StrictCpuMath();
            if (r.GetValue(threads) is { } t)
            {
                if (t < 1) throw new ArgumentException("--threads must be at least 1");
                TorchSharp.torch.set_num_threads(t);
            }
            var overrides = new List<string>(r.GetValue(set) ?? []);
            if (r.GetValue(idEnc) is { } e) overrides.Add($"identity_encoder={e}");
            if (r.GetValue(steps) is { } s) overrides.Add($"steps={s}");
            if (r.GetValue(precision) is { } pr) overrides.Add($"precision={pr}");
            var cfg = TrainingConfig.Load(r.GetValue(config), overrides);
            var dataDir = r.GetValue(data)!;
            var dataset = ImageLatentDataset.Open(dataDir);
            var genPath = r.GetValue(generator)!;
            var runDir = r.GetValue(output)!;
            bool isResume = r.GetValue(resume);
            if (!isResume && Trainer.LatestCheckpoint(runDir) is { } existing)
                throw new RunException($"{runDir} already holds a run (checkpoint {Path.GetFileName(existing)}): pass --resume to continue it, or choose another -o");
            var dev = DeviceSelection.Resolve(r.GetValue(device));
            var store = new ModelStore(r.GetValue(models));
            var g = TrainingSetup.LoadGenerator(genPath);
            var sha = Deid.Models.Weights.SafeTensors.Sha256(genPath);
            if (dataset.Info.GeneratorSha256.Length > 0 && dataset.Info.GeneratorSha256 != sha)
                throw new RunException($"{dataDir} was drawn from another generator ({dataset.Info.Generator}) than {genPath}");
            OnnxFaceRecognizer? recognizer = null;
            if (cfg.ValidateEvery > 0)
            {
                var p = Path.Combine(store.Root, OnnxFaceRecognizer.RelativePath);
                if (!File.Exists(p)) throw new RunException($"validation needs the independent recognizer {p} (run `deid models fetch`, or --set validate_every=0)");
                recognizer = OnnxFaceRecognizer.Load(p);
            }
            var eId = TrainingSetup.LoadIdentityEncoder(cfg.IdentityEncoder, store.Root);
            var eLnd = TrainingSetup.LoadLandmarkEncoder(store.Root);
            var (model, dw) = TrainingSetup.Build(cfg, g, eId, eLnd, dev);
            using var _m = model;
            using var _d = dw;
            using var _r = recognizer;
            using var trainer = new Trainer(cfg, model, dw, dataset, runDir, new RunSources(Path.GetFullPath(dataDir), sha, cfg.IdentityEncoder, Path.GetFullPath(genPath)), recognizer, dev)
            {
                Progress = Console.Error,
            };
            if (isResume) trainer.Resume(); else trainer.StartNew();
            Console.Error.WriteLine($"{(isResume ? "resuming" : "training")} {Path.GetFullPath(runDir)} at step {trainer.Step} of {cfg.Steps} (batch {cfg.BatchSize}, {dataset.Indices.Count} images, E_id {cfg.IdentityEncoder}, device {dev}, precision {cfg.Precision})");
            await Task.Run(() => trainer.Run(ct), CancellationToken.None);
            var best = Path.Combine(trainer.RunDir, Trainer.BestDir);
            Console.WriteLine($"trained to step {trainer.Step}: {Trainer.LatestCheckpoint(trainer.RunDir)}"
                              + (Directory.Exists(best) ? $"; best by validation: {best} (use with --weights-dir)" : ""));
            return 0;
        });
        return cmd;
    }
}
