connect {
"enabled": true
}
