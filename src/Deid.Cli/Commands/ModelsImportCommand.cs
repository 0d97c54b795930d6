using System.CommandLine;
using Deid.Models;

namespace Deid.Cli.Commands;

/// <summary>
/// <c>deid models import FILE --as stylegan2|irse50|inception|port-attr-encoder|port-mapper [--key K] [-o OUT.safetensors]</c>:
/// converts a published PyTorch checkpoint into Deid's safetensors form (strictly checked against the network, config and
/// source sha256 recorded). The port kinds read whole pickled modules (the ID-disentanglement port's trained E_attr and M).
/// </summary>
public static class ModelsImportCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description = "checkpoint written by torch.save (.pt/.pth, zip or legacy format; a state dict, or for the port kinds a whole module)" };
        var kind = new Option<string>("--as") { Description = "which network the checkpoint holds", Required = true };
        kind.AcceptOnlyFromAmong([.. ModelImport.Kinds]);
        var key = new Option<string?>("--key")
        {
            Description = "where the state dict is inside the checkpoint (stylegan2 default: g_ema; nested: state_dict/decoder.)",
        };
        var output = new Option<string?>("--output", "-o") { Description = "output .safetensors (default: the catalogue path in the models directory, see `deid models list`)" };
        var models = ModelsCommand.DirectoryOption("models directory for the default output");

        var cmd = new Command("import", "Convert a PyTorch checkpoint (StyleGAN2 g_ema, IR-SE50, Inception-v3, the ID-disentanglement port's trained E_attr/M) to Deid's safetensors weights");
        cmd.Arguments.Add(file);
        cmd.Options.Add(kind);
        cmd.Options.Add(key);
        cmd.Options.Add(output);
        cmd.Options.Add(models);
        cmd.SetAction(parse =>
        {
            var src = parse.GetValue(file)!;
            var k = parse.GetValue(kind)!;
            var store = new ModelStore(parse.GetValue(models));
            // Checked here too: the default output name is derived from the file's name, and a missing file should
            // be reported as missing rather than as an unknown checkpoint name.
            if (!File.Exists(src)) throw new FileNotFoundException($"checkpoint not found: {src}");
            // Published file names map onto the catalogue, so `deid models list` sees the import as present.
            var outPath = parse.GetValue(output) ?? store.ImportTarget(src, ModelImport.CatalogueName(k));
            var r = ModelImport.Import(src, k, outPath, parse.GetValue(key));
            store.Record(r.OutputPath, $"imported from {Path.GetFileName(src)} (sha256 {r.SourceSha256})");
            Console.WriteLine($"wrote {r.OutputPath}: {r.Kind}, {r.TensorCount} tensors, {r.Elements:N0} elements");
            Console.WriteLine($"  source {Path.GetFileName(src)} sha256 {r.SourceSha256}");
            if (r.Metadata.TryGetValue("config", out var cfg)) Console.WriteLine($"  config {cfg}");
            foreach (var n in r.Notes) Console.WriteLine($"  note: {n}");
            return 0;
        });
        return cmd;
    }
}
