using Deid.Models;
using Deid.Models.Encoders;
using Deid.Models.FaceApi;
using Deid.Models.Mapping;
using Deid.Models.Weights;
using TorchSharp;
using static TorchSharp.torch;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Training;

/// <summary>Builds the networks of a run from a configuration and the files on disk (one-line errors for bad input).</summary>
public static class TrainingSetup
{
    /// <summary>Loads a StyleGAN2 generator file, or says in one line why it is not one.</summary>
    public static Generator LoadGenerator(string path)
    {
        if (!File.Exists(path)) throw new RunException($"generator file not found: {path}");
        try { return Generator.FromSafeTensors(path); }
        catch (Exception e) when (e is WeightsException or ArgumentException or InvalidDataException or IOException or FormatException)
        {
            throw new RunException($"{path} is not a StyleGAN2 generator in deid's format ({e.Message.Split('\n')[0]}; import a published checkpoint with `deid models import FILE --as stylegan2`)", e);
        }
    }

    /// <summary>E_id by name: IR-SE50 from <c>models/irse50</c> (imported) or face-api's ResNet from <c>models/face-api</c>.</summary>
    public static IIdentityEncoder LoadIdentityEncoder(string name, string? modelsDir)
    {
        var store = new ModelStore(modelsDir);
        switch (name)
        {
            case "irse50":
            {
                var path = store.PathOf("irse50");
                if (!File.Exists(path)) throw new RunException($"IR-SE50 weights not found at {path} (import pSp's model_ir_se50.pth with `deid models import FILE --as irse50`, or use --identity-encoder face-api)");
                var net = new IrSe50();
                try { StateDict.LoadFile(net, path); }
                catch (WeightsException e) { net.Dispose(); throw new RunException($"{path}: {e.Message}", e); }
                return net;
            }
            case "face-api":
            {
                var dir = ModelStore.FaceApiDir(store.Root);
                if (!File.Exists(Path.Combine(dir, FaceRecognitionNet.ManifestName)))
                    throw new RunException($"face-api recognizer weights not found in {dir} (run `deid models fetch`)");
                return FaceRecognitionNet.Load(dir);
            }
            default: throw new RunException($"unknown identity encoder '{name}' (irse50 or face-api)");
        }
    }

    public static FaceLandmark68Net LoadLandmarkEncoder(string? modelsDir)
    {
        var dir = ModelStore.FaceApiDir(new ModelStore(modelsDir).Root);
        if (!File.Exists(Path.Combine(dir, FaceLandmark68Net.ManifestName)))
            throw new RunException($"face-api landmark weights not found in {dir} (run `deid models fetch`)");
        return FaceLandmark68Net.Load(dir);
    }

    /// <summary>
    /// The trainable parts from the configuration, initialised from <see cref="TrainingConfig.Seed"/> (torch's global
    /// generator is seeded here, explicitly, because TorchSharp's layer initialisers draw from it).
    /// </summary>
    public static (TrainableDisentangler Model, DW Dw) Build(TrainingConfig cfg, Generator g, IIdentityEncoder eId, FaceLandmark68Net eLnd, Device? device = null)
    {
        lock (s_seedGate) return BuildSeeded(cfg, g, eId, eLnd, device);
    }

    private static readonly object s_seedGate = new();

    /// <summary>The frozen networks' type for <see cref="TrainingConfig.Precision"/> on <paramref name="device"/>; fp16 is refused off CUDA.</summary>
    public static ScalarType FrozenType(TrainingConfig cfg, Device device) => cfg.Precision switch
    {
        "fp32" => ScalarType.Float32,
        "bf16" => ScalarType.BFloat16,
        "fp16" when device.type == DeviceType.CUDA => ScalarType.Float16,
        "fp16" => throw new RunException($"precision fp16 needs a CUDA device (the device is {device}): CPU has no fast fp16 kernels; use bf16 or fp32 there"),
        var p => throw new TrainingConfigException($"config: precision must be fp32, bf16 or fp16, got '{p}'"),
    };

    private static (TrainableDisentangler Model, DW Dw) BuildSeeded(TrainingConfig cfg, Generator g, IIdentityEncoder eId, FaceLandmark68Net eLnd, Device? device)
    {
        torch.random.manual_seed(cfg.Seed);
        InceptionV3 attr;
        if (cfg.AttrInit is { } init)
        {
            if (!File.Exists(init)) throw new RunException($"attr_init file not found: {init}");
            bool aux;
            using (var f = SafeTensors.Open(init)) aux = f.Contains("AuxLogits.fc.weight");
            attr = new InceptionV3(auxLogits: aux, width: cfg.AttrWidth);
            try { StateDict.LoadFile(attr, init); }
            catch (WeightsException e) { attr.Dispose(); throw new RunException($"attr_init {init}: {e.Message}", e); }
        }
        else attr = new InceptionV3(auxLogits: false, width: cfg.AttrWidth);
        var m = new M(eId.Dim + attr.FeatureDim, cfg.MapperHidden.Append(g.StyleDim).ToArray());
        var dw = new DW(g.StyleDim, cfg.DwWidths);
        var model = new TrainableDisentangler(eId, attr, m, g, eLnd, LatentWeights.ParseNormalization(cfg.AttrNormalization), cfg.AttrInputSize);
        if (device is not null) { model.to(device); dw.to(device); }
        model.SetFrozenType(FrozenType(cfg, device ?? CPU));
        return (model, dw);
    }
}
