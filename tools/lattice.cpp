// lattice: command-line inspector for formats, casts and quantization (placeholder until the CLI lands).
int main() { return 0; }
