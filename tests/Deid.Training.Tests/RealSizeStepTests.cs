using Deid.Models.Encoders;
using Deid.Models.FaceApi;
using Deid.Models.StyleGAN2;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Training.Tests;

/// <summary>
/// The published sizes (G 256 config-f, InceptionV3 at 299, IR-SE50, face-api's full landmark net, M 2560-2048-1024-512-512,
/// D_W 512-256-128-64-1), random weights, one full training step on CPU at batch 1: about a minute of CPU time and
/// 2 GB peak for the whole test process, so it runs by default. DEID_REAL_SIZE_BATCH runs it at a larger batch (the
/// paper's is 6); the step's speed is the bench's business (`make bench ARGS=training`), not this test's.
/// </summary>
public class RealSizeStepTests
{
    [Fact]
    public void One_full_training_step_at_the_published_sizes_runs_end_to_end_on_CPU()
    {
        if (TestPaths.MissingFaceApiWeights(FaceLandmark68Net.ManifestName) is { } why) Assert.Skip(why);
        int batch = int.TryParse(Environment.GetEnvironmentVariable("DEID_REAL_SIZE_BATCH"), out var b) && b > 0 ? b : 1;
        using var tmp = new TempDir();
        var gPath = tmp.File("g256.safetensors");
        torch.random.manual_seed(1);
        using (var g0 = new Generator(StyleGAN2Config.Ffhq256))
            Deid.Models.Weights.SafeTensors.Save(gPath, PyTorchOrder.StateDict(g0), new Dictionary<string, string> { ["config"] = g0.Config.ToJson() });
        var g = Generator.FromSafeTensors(gPath);
        // Enough images for a batch of attributes and one of identities, plus two held out.
        DatasetGenerator.Generate(g, gPath, tmp.File("data"), count: 2 * batch + 2, shardSize: 64, batchSize: 1);
        var cfg = new TrainingConfig { BatchSize = batch, Steps = 3, ValidationCount = 2, CheckpointEvery = 0, GridEvery = 0, ValidateEvery = 0 };
        var (model, dw) = TrainingSetup.Build(cfg, g, new IrSe50(), FaceLandmark68Net.Load(TestPaths.FaceApiModels));
        using var _m = model; using var _d = dw;
        Assert.Equal(2560, model.Mapper.InputDim);
        using var t = new Trainer(cfg, model, dw, ImageLatentDataset.Open(tmp.File("data")), tmp.File("run"), new RunSources(tmp.File("data"), "random", "irse50"));
        t.StartNew();
        var before = model.Mapper.state_dict().Values.Select(v => v.clone()).ToList();
        var s = t.TrainStep();
        TestContext.Current.TestOutputHelper?.WriteLine($"batch {batch}: {s.Seconds:F1} s, adv {s.Adv} id {s.Id} lnd {s.Lnd} rec {s.Rec} D {s.D} r1 {s.R1}");
        foreach (var v in new[] { s.Adv, s.Id, s.Lnd, s.Rec, s.D, s.R1, s.Total }) Assert.True(double.IsFinite(v));
        Assert.Contains(model.Mapper.state_dict().Values.Zip(before), p => !p.First.BitEqual(p.Second));
        t.SaveCheckpoint();
    }
}
