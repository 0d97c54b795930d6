using Deid.Models;
using Deid.Models.FaceApi;
using Deid.TestSupport;
using Xunit;
using static TorchSharp.torch;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Training.Tests;

/// <summary>What `deid train` writes is what `deid anonymize --mode latent --weights-dir RUN/best` reads.</summary>
public class LatentModeHandOffTests
{
    [Fact]
    public void A_checkpoint_of_a_face_api_run_is_a_whole_weights_dir_for_latent_mode()
    {
        TinyData.RequireFaceApi();
        if (TestPaths.MissingFaceApiWeights(FaceRecognitionNet.ManifestName) is { } why) Assert.Skip(why);
        using var data = new TinyData();
        var cfg = TinyData.Config(1) with { BatchSize = 2, IdentityEncoder = "face-api" };
        var g = Generator.FromSafeTensors(TinyData.GeneratorPath);
        var (model, dw) = TrainingSetup.Build(cfg, g, FaceRecognitionNet.Load(TestPaths.FaceApiModels), FaceLandmark68Net.LoadTiny(TestPaths.FaceApiModels));
        using var _m = model; using var _d = dw;
        string ckpt;
        using (var t = new Trainer(cfg, model, dw, ImageLatentDataset.Open(data.Dir), data.Temp.File("run"),
                   new RunSources(data.Dir, "tiny", "face-api", TinyData.GeneratorPath)))
        {
            t.StartNew();
            t.TrainStep();
            ckpt = t.SaveCheckpoint();
        }
        // G is linked in (read through the link), and no IR-SE50 file is asked for: M takes face-api's 128-d codes.
        Assert.True(File.Exists(Path.Combine(ckpt, LatentNetworks.GeneratorFile)));
        using var modelsDir = new TempDir();
        Directory.CreateSymbolicLink(Path.Combine(modelsDir.Path, "face-api"), TestPaths.FaceApiModels);
        using var nets = LatentNetworks.Load(new LatentWeightsSpec { WeightsDir = ckpt, ModelsDir = modelsDir.Path }, CPU);
        Assert.Empty(nets.RandomParts);
        Assert.Equal("face-api", nets.IdentityEncoderName);
        Assert.Equal(g.Size, nets.ImageSize);
        Assert.Equal(Path.Combine(ckpt, LatentNetworks.GeneratorFile), nets.Files["G"]);
    }
}
