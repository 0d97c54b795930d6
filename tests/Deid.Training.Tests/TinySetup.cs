using Deid.Faces;
using Deid.Models.Encoders;
using Deid.Models.FaceApi;
using Deid.Models.Mapping;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Training.Tests;

/// <summary>
/// The tiny configuration every training test uses: the reference fixture G (32², 64-d W), 
/// <see cref="TinyIdentityEncoder"/> as the E_id stand-in (random, frozen), a 1/8-width InceptionV3 on 75² inputs, M 272→64→64→64, face-api's real (Tiny) landmark
/// net, and a 48-image dataset generated once per test class.
/// </summary>
public sealed class TinyData : IDisposable
{
    /// <summary>The reference fixture G written as `deid models import` writes generators (no key prefix, config metadata).</summary>
    public static string GeneratorPath => s_generator.Value;

    private static readonly Lazy<string> s_generator = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), $"deid-train-tests-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "stylegan2_small_g.safetensors");
        using var g = Generator.FromSafeTensors(TestPaths.Golden("reference", "stylegan2_small.safetensors"), "state.");
        Deid.Models.Weights.SafeTensors.Save(path, Deid.Models.Encoders.PyTorchOrder.StateDict(g),
            new Dictionary<string, string> { ["config"] = g.Config.ToJson() });
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return path;
    });
    public TempDir Temp { get; } = new();
    public string Dir => Temp.File("data");

    public TinyData()
    {
        using var g = Generator.FromSafeTensors(GeneratorPath);
        DatasetGenerator.Generate(g, GeneratorPath, Dir, count: 48, seed: 3, shardSize: 16);
    }

    public void Dispose() => Temp.Dispose();

    public static TrainingConfig Config(long steps = 10) => new()
    {
        Steps = steps, BatchSize = 4, MapperHidden = [64, 64], DwWidths = [32, 16, 1], AttrWidth = 0.125, AttrInputSize = 75,
        CheckpointEvery = 0, GridEvery = 0, ValidateEvery = 0, ValidationCount = 8, ValidationPairs = 4, GridSize = 3, Seed = 11,
    };

    public static void RequireFaceApi()
    {
        if (TestPaths.MissingFaceApiWeights(FaceLandmark68Net.TinyManifestName) is { } why) Assert.Skip(why);
    }

    /// <summary>A fresh tiny model (same seed: same initial weights).</summary>
    public static (TrainableDisentangler Model, DW Dw) Build(TrainingConfig cfg)
    {
        RequireFaceApi();
        var g = Generator.FromSafeTensors(GeneratorPath);
        torch.random.manual_seed(99);
        var eId = new TinyIdentityEncoder();
        var eLnd = FaceLandmark68Net.LoadTiny(TestPaths.FaceApiModels);
        return TrainingSetup.Build(cfg, g, eId, eLnd);
    }

    public static Trainer NewTrainer(TrainingConfig cfg, string dataDir, string runDir, bool withRecognizer = false)
    {
        var (model, dw) = Build(cfg);
        var data = ImageLatentDataset.Open(dataDir);
        OnnxFaceRecognizer? rec = null;
        if (withRecognizer)
        {
            var p = Path.Combine(TestPaths.Models, OnnxFaceRecognizer.RelativePath);
            if (!File.Exists(p)) Assert.Skip($"recognizer {p} missing (run `deid models fetch`)");
            rec = OnnxFaceRecognizer.Load(p);
        }
        return new Trainer(cfg, model, dw, data, runDir, new RunSources(dataDir, "tiny", "irse50-tiny"), rec);
    }
}

/// <summary>E_id stand-in: the 256² crop pooled to 16², one 3×3 conv with BatchNorm, pooled, a linear layer, L2-normalised (16-d).</summary>
public sealed class TinyIdentityEncoder : torch.nn.Module<torch.Tensor, torch.Tensor>, Deid.Models.IIdentityEncoder
{
    private readonly TorchSharp.Modules.Conv2d conv = torch.nn.Conv2d(3, 8, 3, padding: 1);
    private readonly TorchSharp.Modules.BatchNorm2d bn = torch.nn.BatchNorm2d(8);
    private readonly TorchSharp.Modules.Linear fc = torch.nn.Linear(8 * 4 * 4, 16);
    public int Dim => 16;
    public TinyIdentityEncoder() : base(nameof(TinyIdentityEncoder)) => RegisterComponents();
    public override torch.Tensor forward(torch.Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var y = torch.nn.functional.adaptive_avg_pool2d(x, new long[] { 16, 16 });
        y = torch.nn.functional.relu(bn.call(conv.call(y)));
        y = fc.call(torch.nn.functional.adaptive_avg_pool2d(y, new long[] { 4, 4 }).flatten(1));
        return torch.nn.functional.normalize(y, p: 2, dim: 1).MoveToOuterDisposeScope();
    }
    public torch.Tensor Encode(torch.Tensor alignedCrops256) => forward(alignedCrops256);
}
