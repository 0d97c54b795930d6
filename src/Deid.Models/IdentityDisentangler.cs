using Deid.Models.Encoders;
using Deid.Models.Mapping;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models;

/// <summary>
/// The composed model of Nitzan et al. 2020: w = M([E_id(identity crop), E_attr(attribute crop)]),
/// image = G(w). For de-identification the identity code of the replacement face is computed once
/// (<see cref="EncodeIdentity"/>) and reused for every frame, whose own crop supplies the attributes
/// (pose, expression, lighting).
/// </summary>
public sealed class IdentityDisentangler : IDisposable
{
    private readonly bool _ownsComponents;
    private bool _disposed;

    public IIdentityEncoder IdentityEncoder { get; }
    public InceptionV3 AttributeEncoder { get; }
    public M Mapper { get; }
    public IGenerator Generator { get; }
    public Device Device { get; }

    /// <summary>How attribute crops are normalised for E_attr (depends on the weights' provenance).</summary>
    public InceptionInputNormalization AttributeNormalization { get; init; } = InceptionInputNormalization.MinusOneToOne;

    /// <summary>
    /// When true (default) every call runs without autograd, which is what inference wants
    /// (several times less memory); training code sets it false to backpropagate through the calls.
    /// </summary>
    public bool InferenceMode { get; set; } = true;

    /// <param name="ownsComponents">Dispose the networks (those that are disposable) with this object.</param>
    public IdentityDisentangler(IIdentityEncoder identityEncoder, InceptionV3 attributeEncoder, M mapper, IGenerator generator,
        Device? device = null, bool ownsComponents = true)
    {
        IdentityEncoder = identityEncoder ?? throw new ArgumentNullException(nameof(identityEncoder));
        AttributeEncoder = attributeEncoder ?? throw new ArgumentNullException(nameof(attributeEncoder));
        Mapper = mapper ?? throw new ArgumentNullException(nameof(mapper));
        Generator = generator ?? throw new ArgumentNullException(nameof(generator));
        if (mapper.InputDim != identityEncoder.Dim + attributeEncoder.FeatureDim)
            throw new ArgumentException(
                $"mapper M takes {mapper.InputDim} inputs but E_id ({identityEncoder.Dim}) + E_attr ({attributeEncoder.FeatureDim}) give {identityEncoder.Dim + attributeEncoder.FeatureDim}");
        if (mapper.OutputDim != generator.StyleDim)
            throw new ArgumentException($"mapper M outputs {mapper.OutputDim}-d codes but the generator's W space is {generator.StyleDim}-d");
        _ownsComponents = ownsComponents;
        Device = device ?? CPU;
        foreach (var m in new object[] { identityEncoder, attributeEncoder, mapper, generator }.Distinct())
        {
            if (m is nn.Module module)
            {
                module.to(Device);
                module.eval();
            }
        }
    }

    /// <summary>Identity codes <c>[B,Dim]</c> from aligned crops <c>[B,3,256,256]</c> RGB in [-1,1].</summary>
    public Tensor EncodeIdentity(Tensor idCrops)
    {
        CheckCrops(idCrops, nameof(idCrops));
        using var grad = InferenceMode ? no_grad() : null;
        using var scope = NewDisposeScope();
        var code = IdentityEncoder.Encode(idCrops.to(Device));
        if (code.dim() != 2 || code.shape[1] != IdentityEncoder.Dim)
            throw new InvalidOperationException($"E_id returned [{string.Join(",", code.shape)}], expected [B,{IdentityEncoder.Dim}]");
        return code.MoveToOuterDisposeScope();
    }

    /// <summary>Attribute codes <c>[B,FeatureDim]</c> from aligned crops <c>[B,3,H,W]</c> RGB in [-1,1].</summary>
    public Tensor EncodeAttributes(Tensor attrCrops)
    {
        CheckCrops(attrCrops, nameof(attrCrops));
        using var grad = InferenceMode ? no_grad() : null;
        using var scope = NewDisposeScope();
        var x = InceptionV3.Preprocess(attrCrops.to(Device), AttributeNormalization);
        return AttributeEncoder.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// W codes <c>[B,StyleDim]</c>: one per attribute crop, all carrying <paramref name="idCode"/>
    /// (<c>[1,Dim]</c>, broadcast to the batch, or <c>[B,Dim]</c>).
    /// </summary>
    public Tensor MapAttributes(Tensor idCode, Tensor attrCrops)
    {
        using var grad = InferenceMode ? no_grad() : null;
        using var scope = NewDisposeScope();
        var attr = EncodeAttributes(attrCrops);
        var id = BroadcastId(idCode, attr.shape[0]);
        return Mapper.Map(id, attr).MoveToOuterDisposeScope();
    }

    /// <summary>Images <c>[B,3,S,S]</c> (≈[-1,1], unclamped) of the identity in each crop's pose/expression.</summary>
    public Tensor Generate(Tensor idCode, Tensor attrCrops)
    {
        using var grad = InferenceMode ? no_grad() : null;
        using var scope = NewDisposeScope();
        var w = MapAttributes(idCode, attrCrops);
        return Generator.Synthesize(w).MoveToOuterDisposeScope();
    }

    private Tensor BroadcastId(Tensor idCode, long batch)
    {
        if (idCode.dim() == 1) idCode = idCode.unsqueeze(0);
        if (idCode.dim() != 2 || idCode.shape[1] != IdentityEncoder.Dim)
            throw new ArgumentException($"identity code must be [1,{IdentityEncoder.Dim}] or [B,{IdentityEncoder.Dim}], got [{string.Join(",", idCode.shape)}]");
        idCode = idCode.to(Device);
        if (idCode.shape[0] == batch) return idCode;
        if (idCode.shape[0] == 1) return idCode.expand(batch, idCode.shape[1]);
        throw new ArgumentException($"{idCode.shape[0]} identity codes for {batch} attribute crops (give one code or one per crop)");
    }

    private static void CheckCrops(Tensor crops, string name)
    {
        if (crops.dim() != 4 || crops.shape[1] != 3 || crops.shape[0] == 0)
            throw new ArgumentException($"{name} must be a non-empty [B,3,H,W] RGB batch, got [{string.Join(",", crops.shape)}]");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!_ownsComponents) return;
        foreach (var c in new object[] { IdentityEncoder, AttributeEncoder, Mapper, Generator }.Distinct())
            (c as IDisposable)?.Dispose();
    }
}

/// <summary>Conversions between 8-bit BGR crops (OpenCV layout) and the networks' RGB [-1,1] tensors.</summary>
public static class CropTensors
{
    /// <summary>Interleaved BGR bytes of one <paramref name="height"/>×<paramref name="width"/> image (no row padding) → <c>[1,3,H,W]</c>.</summary>
    public static Tensor FromBgr24(ReadOnlySpan<byte> pixels, int height, int width)
    {
        if (height <= 0 || width <= 0 || pixels.Length != (long)height * width * 3)
            throw new ArgumentException($"expected {height}x{width}x3 = {(long)height * width * 3} bytes, got {pixels.Length}");
        using var scope = NewDisposeScope();
        var hwc = torch.tensor(pixels.ToArray(), new long[] { 1, height, width, 3 });
        return FromBgrHwc(hwc).MoveToOuterDisposeScope();
    }

    /// <summary><c>[H,W,3]</c> or <c>[B,H,W,3]</c> uint8 BGR → <c>[B,3,H,W]</c> float32 RGB in [-1,1].</summary>
    public static Tensor FromBgrHwc(Tensor bgr)
    {
        if (bgr.dim() == 3) bgr = bgr.unsqueeze(0);
        if (bgr.dim() != 4 || bgr.shape[3] != 3)
            throw new ArgumentException($"expected BGR pixels [B,H,W,3], got [{string.Join(",", bgr.shape)}]");
        using var scope = NewDisposeScope();
        var rgb = bgr.flip(3).permute(0, 3, 1, 2).to_type(ScalarType.Float32);
        return (rgb / 127.5f - 1f).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary><c>[B,3,H,W]</c> RGB in [-1,1] → <c>[B,H,W,3]</c> uint8 BGR on the CPU (clamped, rounded).</summary>
    public static Tensor ToBgrHwc(Tensor rgb)
    {
        if (rgb.dim() != 4 || rgb.shape[1] != 3)
            throw new ArgumentException($"expected RGB images [B,3,H,W], got [{string.Join(",", rgb.shape)}]");
        using var scope = NewDisposeScope();
        var x = ((rgb.detach().to_type(ScalarType.Float32).cpu() + 1f) * 127.5f).round().clamp(0, 255);
        return x.to_type(ScalarType.Byte).permute(0, 2, 3, 1).flip(3).contiguous().MoveToOuterDisposeScope();
    }
}
