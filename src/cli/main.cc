#include <cstdio>
int main() { std::puts("tpinfer"); return 0; }
