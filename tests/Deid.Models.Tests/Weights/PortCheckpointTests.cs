using Deid.Models.Encoders;
using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests.Weights;

/// <summary>The port's fixtures, made once for the class (python3-torch, ~10 s and ~150 MB of temp files).</summary>
public sealed class PortFixtureDir : IDisposable
{
    private readonly TempDir _dir = new();

    public PortFixtureDir() => SkipReason = PortFixtures.TryMake(_dir.Path);

    public string? SkipReason { get; }

    public string File(string name)
    {
        if (SkipReason is not null) Assert.Skip(SkipReason);
        return _dir.File(name);
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>
/// `deid models import --as port-attr-encoder|port-mapper` on whole pickled modules laid out like the published
/// attr_encoder_*.pt / maper_*.pt: python3-torch's outputs of the same modules are reproduced, and anything outside
/// the port's layout is refused by name.
/// </summary>
public sealed class PortCheckpointTests(PortFixtureDir fixtures) : IClassFixture<PortFixtureDir>
{
    private Dictionary<string, Tensor> Reference() => PyTorchCheckpoint.StateDict(PyTorchCheckpoint.Load(fixtures.File("port_reference.pt")));

    private static float MaxAbsDiff(Tensor a, Tensor b)
    {
        Assert.Equal(a.shape, b.shape);
        using var scope = NewDisposeScope();
        return (a - b).abs().max().item<float>();
    }

    [Fact]
    public void AttrEncoder_Import_ReproducesTorchOnThePortsInputConvention()
    {
        var src = fixtures.File("attr_encoder_FIXTURE_0.pt");
        using var tmp = new TempDir();
        var outPath = tmp.File(LatentWeights.AttrEncoderFile);
        var r = ModelImport.Import(src, ModelImport.PortAttrEncoder, outPath);

        Assert.Equal(outPath, r.OutputPath);
        Assert.Equal("attr_encoder_FIXTURE_0.pt", r.Metadata["source"]);
        Assert.Equal(SafeTensors.Sha256(src), r.Metadata["source_sha256"]);
        Assert.Equal("Models.Encoders.Inception.Inception", r.Metadata["source_class"]);
        Assert.Equal(LatentWeights.AttrEncoderKind, r.Metadata[LatentWeights.KindKey]);
        Assert.Contains(r.Notes, n => n.Contains("training mode"));
        Assert.StartsWith("model.N:", r.Metadata["source_layout"]);

        var reference = Reference();
        var (net, norm) = LatentWeights.LoadAttrEncoder(outPath);
        try
        {
            Assert.Equal(InceptionInputNormalization.Zero255, norm);
            Assert.Equal(0, net.NumClasses);    // the port drops fc; no made-up classifier is stored
            Assert.False(net.HasAuxLogits);
            net.eval();
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            // The same image: Deid's [-1,1] crop through Preprocess(Zero255), the port's [0,1] image through its wrapper.
            var features = net.forward(InceptionV3.Preprocess(reference["attr.crop"], norm));
            float diff = MaxAbsDiff(reference["attr.features"], features);
            Assert.True(diff <= 1e-4, $"E_attr differs from python3-torch by {diff} (features up to {reference["attr.features"].abs().max().item<float>()})");
        }
        finally
        {
            net.Dispose();
            foreach (var t in reference.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData("maper_FIXTURE_0.pt")]
    [InlineData("maper_FIXTURE_legacy.pt")]
    public void Mapper_Import_ReproducesTorchOnFixedCodes(string file)
    {
        var src = fixtures.File(file);
        using var tmp = new TempDir();
        var outPath = tmp.File(LatentWeights.MapperFile);
        var r = ModelImport.Import(src, ModelImport.PortMapper, outPath);
        Assert.Equal(8, r.TensorCount);
        Assert.Equal(file, r.Metadata["source"]);
        Assert.Equal(SafeTensors.Sha256(src), r.Metadata["source_sha256"]);
        Assert.StartsWith("model.0, model.2, model.4, model.6 -> layers.0..3; LeakyReLU slope 0.2", r.Metadata["source_layout"]);

        var reference = Reference();
        using var m = LatentWeights.LoadMapper(outPath);
        try
        {
            Assert.Equal(0.2, m.NegativeSlope, 6);
            using var _ = no_grad();
            using var w = m.Map(reference["mapper.id"], reference["mapper.attr"]);   // the port's [id, attr] order
            float diff = MaxAbsDiff(reference["mapper.w"], w);
            Assert.True(diff <= 1e-4, $"M differs from python3-torch by {diff}");
        }
        finally
        {
            foreach (var t in reference.Values) t.Dispose();
        }
    }

    [Fact]
    public void PickledModule_ReadsTheStateDictTorchWouldWrite()
    {
        var root = PyTorchCheckpoint.Load(fixtures.File("maper_FIXTURE_0.pt"));
        try
        {
            var top = PickledModule.From(root);
            Assert.Equal("Models.LatentMapper.LatentMapper", top.Type.FullName);
            var seq = Assert.Single(top.Children);
            Assert.Equal(("model", "torch.nn.modules.container.Sequential"), (seq.Path, seq.Type.FullName));
            Assert.Equal(["Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"], seq.Children.Select(c => c.Type.Name));
            Assert.Equal(0.2, seq.Children[1].Number("negative_slope"), 6);
            var sd = top.StateDict();
            Assert.Equal(["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias", "model.4.weight", "model.4.bias", "model.6.weight", "model.6.bias"], sd.Keys);
            Assert.Equal(new long[] { 2048, 2560 }, sd["model.0.weight"].shape);
        }
        finally { PyTorchCheckpoint.DisposeTensors(root); }
    }

    [Theory]
    [InlineData("attr_encoder_nopool.pt")]       // Python >= 3.11: getattr(InterpolationMode, 'BILINEAR')
    [InlineData("attr_encoder_py37enum.pt")]     // Python 3.7, as the published files were written: InterpolationMode('bilinear')
    public void EnumMembers_AreReadAsInertValuesInBothPickleForms(string file)
    {
        var root = PyTorchCheckpoint.Load(fixtures.File(file));
        try
        {
            var top = PickledModule.From(root);
            var compose = Assert.IsType<PyObject>(top.Attribute("preprocess"));
            Assert.Equal("torchvision.transforms.transforms.Compose", compose.Type.FullName);
            var steps = Assert.IsType<List<object?>>(Assert.IsType<PyDict>(compose.State)["transforms"]);
            var resize = PickledModule.From(steps[0]);
            Assert.Equal(("Resize", 299.0), (resize.Type.Name, resize.Number("size")));
            var mode = Assert.IsType<PyObject>(resize.Attribute("interpolation"));
            Assert.Equal("torchvision.transforms.functional.InterpolationMode", mode.Type.FullName);
            Assert.Contains(Assert.Single(mode.Args), new object?[] { "BILINEAR", "bilinear" });
        }
        finally { PyTorchCheckpoint.DisposeTensors(root); }
    }

    [Fact]
    public void UnknownClass_IsRefusedInOneLineNamingIt()
    {
        using var tmp = new TempDir();
        var ex = Assert.Throws<WeightsException>(() => ModelImport.Import(fixtures.File("bad_unknown_class.pt"), ModelImport.PortMapper, tmp.File("M.safetensors")));
        Assert.Contains("'Models.Extras.Probe'", ex.Message);
        Assert.Contains("bad_unknown_class.pt", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    [Fact]
    public void MisshapedAndMissingTensors_AreNamedAsTheFileSpellsThem()
    {
        using var tmp = new TempDir();
        var ex = Assert.Throws<WeightsException>(() => ModelImport.Import(fixtures.File("maper_misshaped.pt"), ModelImport.PortMapper, tmp.File("M.safetensors")));
        Assert.StartsWith(fixtures.File("maper_misshaped.pt") + ": ", ex.Message);
        Assert.Contains("'model.0.weight' (layers.0.weight) is [8,16] in the checkpoint, [2048,2560] in port-mapper", ex.Message);
        Assert.Contains("missing 'model.6.bias' (layers.3.bias) [512]", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    [Theory]
    [InlineData("attr_encoder_nopool.pt", "model.3")]
    [InlineData("attr_encoder_nopool_rewrapped.pt", "model.0.3")]   // the Inference notebook's Inception(loaded) nesting
    public void AttrEncoderWithoutThePools_IsRefusedWithTheReason(string file, string child)
    {
        using var tmp = new TempDir();
        var ex = Assert.Throws<WeightsException>(() => ModelImport.Import(fixtures.File(file), ModelImport.PortAttrEncoder, tmp.File("E.safetensors")));
        Assert.Contains($"{child} is a BasicConv2d where MaxPool2d (maxpool1) belongs", ex.Message);
        Assert.Contains("torchvision before 0.8", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }

    [Fact]
    public void WholeModule_UnderAStateDictKind_PointsToThePortKinds()
    {
        using var tmp = new TempDir();
        var ex = Assert.Throws<WeightsException>(() => ModelImport.Import(fixtures.File("maper_misshaped.pt"), "inception", tmp.File("x.safetensors")));
        Assert.Contains("whole pickled module (Models.LatentMapper.LatentMapper)", ex.Message);
        Assert.Contains("--as port-attr-encoder / port-mapper", ex.Message);
    }
}
