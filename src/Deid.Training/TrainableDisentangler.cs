using Deid.Models;
using Deid.Models.Encoders;
using Deid.Models.FaceApi;
using Deid.Models.Mapping;
using Deid.Models.StyleGAN2;
using Generator = Deid.Models.StyleGAN2.Generator;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Training;

/// <summary>
/// The composed model of Nitzan et al. as training sees it: E_id, E_attr, M and G (plus E_lnd for the landmark loss)
/// registered as submodules of one module, E_attr and M trainable, E_id, E_lnd and G frozen explicitly: their
/// parameters have <c>requires_grad = false</c> (no gradient buffers) and they stay in eval mode (BatchNorm uses its
/// running statistics) whatever <see cref="train"/> is told, while gradients still flow <em>through</em> them to the
/// image and on to M and E_attr. No global switches: autograd is on or off per call, as the caller chooses.
/// <para>
/// Inference keeps using <see cref="IdentityDisentangler"/>; the trained E_attr and M are written with
/// <see cref="LatentWeights"/> and load there unchanged.
/// </para>
/// </summary>
public sealed class TrainableDisentangler : nn.Module
{
    private readonly nn.Module _identityModule;
    private readonly List<nn.Module> _frozen;

    public IIdentityEncoder IdentityEncoder { get; }
    public InceptionV3 AttributeEncoder { get; }
    public M Mapper { get; }
    public Generator Generator { get; }
    public FaceLandmark68Net LandmarkEncoder { get; }

    /// <summary>E_attr's input convention (recorded in <c>E_attr.safetensors</c>).</summary>
    public InceptionInputNormalization AttributeNormalization { get; }

    /// <summary>Side E_attr's input is resized to (299 for the published network; smaller for tiny test configurations).</summary>
    public int AttributeInputSize { get; }

    /// <summary>
    /// The type the frozen networks hold and compute in (Float32, or BFloat16/Float16 for mixed precision): their
    /// inputs are cast to it on the way in and their outputs back to Float32 on the way out, so E_attr, M, the
    /// losses and every gradient the optimizer sees stay Float32 (the trained weights are their own master copy).
    /// TorchSharp 0.107 has no autocast, hence the explicit boundary.
    /// </summary>
    public ScalarType FrozenType { get; private set; } = ScalarType.Float32;

    /// <summary>Casts E_id, G and E_lnd to <paramref name="type"/> (their weights are never updated, so nothing is lost to rounding later).</summary>
    public void SetFrozenType(ScalarType type)
    {
        if (type is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"the frozen networks run in Float32, BFloat16 or Float16, not {type}");
        foreach (var m in _frozen) m.to(type);
        FrozenType = type;
    }

    private Tensor In(Tensor x) => x.dtype == FrozenType ? x : x.to_type(FrozenType);
    private static Tensor Out(Tensor x) => x.dtype == ScalarType.Float32 ? x : x.to_type(ScalarType.Float32);

    /// <summary>The side identity encoders read (FFHQ-aligned 256² crops); other image sizes are resized to it.</summary>
    public const int IdentityInputSize = 256;

    public TrainableDisentangler(IIdentityEncoder identityEncoder, InceptionV3 attributeEncoder, M mapper, Generator generator,
        FaceLandmark68Net landmarkEncoder, InceptionInputNormalization attributeNormalization = InceptionInputNormalization.MinusOneToOne,
        int attributeInputSize = InceptionV3.InputSize) : base(nameof(TrainableDisentangler))
    {
        IdentityEncoder = identityEncoder ?? throw new ArgumentNullException(nameof(identityEncoder));
        _identityModule = identityEncoder as nn.Module
                          ?? throw new ArgumentException("the identity encoder must be a TorchSharp module to be frozen and moved with the model");
        AttributeEncoder = attributeEncoder ?? throw new ArgumentNullException(nameof(attributeEncoder));
        Mapper = mapper ?? throw new ArgumentNullException(nameof(mapper));
        Generator = generator ?? throw new ArgumentNullException(nameof(generator));
        LandmarkEncoder = landmarkEncoder ?? throw new ArgumentNullException(nameof(landmarkEncoder));
        if (mapper.InputDim != identityEncoder.Dim + attributeEncoder.FeatureDim)
            throw new ArgumentException(
                $"mapper M takes {mapper.InputDim} inputs but E_id ({identityEncoder.Dim}) + E_attr ({attributeEncoder.FeatureDim}) give {identityEncoder.Dim + attributeEncoder.FeatureDim}");
        if (mapper.OutputDim != generator.StyleDim)
            throw new ArgumentException($"mapper M outputs {mapper.OutputDim}-d codes but the generator's W space is {generator.StyleDim}-d");
        if (attributeInputSize < 75) throw new ArgumentException($"E_attr needs inputs of at least 75 px, got {attributeInputSize}");
        AttributeNormalization = attributeNormalization;
        AttributeInputSize = attributeInputSize;

        register_module("E_id", _identityModule);
        register_module("E_attr", attributeEncoder);
        register_module("M", mapper);
        register_module("G", generator);
        register_module("E_lnd", landmarkEncoder);
        _frozen = new List<nn.Module> { _identityModule, generator, landmarkEncoder };
        foreach (var m in _frozen)
            foreach (var p in m.parameters()) p.requires_grad = false;
        train(true);
    }

    /// <summary>The parameters the generator-side optimizer updates: E_attr's, then M's.</summary>
    public IEnumerable<Parameter> TrainableParameters() => AttributeEncoder.parameters().Concat(Mapper.parameters());

    /// <summary>E_id, G and E_lnd: never updated, always in eval mode.</summary>
    public IReadOnlyList<nn.Module> FrozenModules => _frozen;

    /// <summary>Train or eval mode for E_attr and M; the frozen networks stay in eval mode either way.</summary>
    public override void train(bool on = true)
    {
        base.train(on);
        foreach (var m in _frozen) m.eval();
    }

    /// <summary>Images <c>[B,3,S,S]</c> in [-1,1] → E_id codes (differentiable in the images; no_grad is the caller's choice).</summary>
    public Tensor EncodeIdentity(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images;
        if (x.shape[2] != IdentityInputSize || x.shape[3] != IdentityInputSize)
            x = F.interpolate(x, new long[] { IdentityInputSize, IdentityInputSize }, mode: InterpolationMode.Bilinear, align_corners: false);
        return Out(IdentityEncoder.Encode(In(x))).MoveToOuterDisposeScope();
    }

    /// <summary>Images → E_attr codes <c>[B,FeatureDim]</c>: resized to <see cref="AttributeInputSize"/>, normalised as the weights expect.</summary>
    public Tensor EncodeAttributes(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images.to_type(ScalarType.Float32);
        if (x.shape[2] != AttributeInputSize || x.shape[3] != AttributeInputSize)
            x = F.interpolate(x, new long[] { AttributeInputSize, AttributeInputSize }, mode: InterpolationMode.Bilinear, align_corners: false);
        // Same value conventions as InceptionV3.Preprocess, which always resizes to 299.
        if (AttributeInputSize == InceptionV3.InputSize) x = InceptionV3.Preprocess(x, AttributeNormalization);
        else if (AttributeNormalization != InceptionInputNormalization.MinusOneToOne)
        {
            var full = InceptionV3.Preprocess(zeros(1, 3, InceptionV3.InputSize, InceptionV3.InputSize, device: x.device), AttributeNormalization);
            var one = InceptionV3.Preprocess(ones(1, 3, InceptionV3.InputSize, InceptionV3.InputSize, device: x.device), AttributeNormalization);
            // Each convention is affine per channel: v ↦ offset + v·scale with offset = f(0), scale = f(1) − f(0).
            var offset = full.select(2, 0).select(2, 0).view(1, 3, 1, 1);
            var scale = (one - full).select(2, 0).select(2, 0).view(1, 3, 1, 1);
            x = offset + x * scale;
        }
        return AttributeEncoder.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>E_lnd's 68 landmarks <c>[B,68,2]</c> in pixels of the images (differentiable in the images).</summary>
    public Tensor Landmarks(Tensor images)
    {
        using var scope = NewDisposeScope();
        return Out(LandmarkEncoder.DetectOnCrops(In(images))).MoveToOuterDisposeScope();
    }

    /// <summary>w = M([idCode, E_attr(attr)]) and I_out = G(w); gradients reach E_attr and M when autograd is on.</summary>
    public (Tensor W, Tensor Image) Forward(Tensor idCode, Tensor attrImages)
    {
        using var scope = NewDisposeScope();
        var attr = EncodeAttributes(attrImages);
        var w = Mapper.Map(idCode.detach(), attr);
        var image = Out(Generator.Synthesize(In(w)));
        return (w.MoveToOuterDisposeScope(), image.MoveToOuterDisposeScope());
    }
}
